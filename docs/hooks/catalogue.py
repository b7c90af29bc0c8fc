"""MkDocs hook: the reference fleet's contract catalogue, rendered at build time.

`docs/catalogue.md` holds the marker below; the hook replaces it with what
`fleet contracts docs` writes for examples/fulfilment (the same model and
templates, `workers.catalogue`): a section per contract, its fields, versions
and their changes, who emits and consumes it, an example. The reference
fleet's topology and workers are imported as `fleet contracts docs` imports
them, so the page follows the code; a worker that cannot be imported fails
the build.

`tests/unit/test_catalogue.py` renders the page as the build does.
"""

from __future__ import annotations

from typing import Any

#: Where in docs/catalogue.md the catalogue goes.
MARKER = "<!-- fleet-contract-catalogue -->"

#: The page that holds the marker.
PAGE = "catalogue.md"


def render() -> str:
    """The reference fleet's catalogue, as Markdown with HTML sections."""
    from fulfilment import TOPOLOGY_FILE

    from topology import load
    from workers.catalogue import build_catalogue
    from workers.catalogue.render import render_markdown
    from workers.flows import fleet_flows
    from workers.loader import load_workers
    from workers.project import register_contracts, use_project_paths

    use_project_paths(TOPOLOGY_FILE)
    topology = load(TOPOLOGY_FILE)
    workers, problems = load_workers(topology)
    if problems:
        raise RuntimeError(f"the reference fleet's workers do not load: {problems[0]}")
    flows = fleet_flows(topology, workers, register_contracts(topology, workers))
    catalogue = build_catalogue(topology, flows, title="fleet-fulfilment", version="")
    return render_markdown(catalogue)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: put the catalogue into docs/catalogue.md."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise RuntimeError(f"docs/{PAGE} has lost its marker {MARKER}")
    return markdown.replace(MARKER, render())
