"""MkDocs hook: the CLI reference, rendered from the click commands at build time.

`docs/cli.md` holds the marker below; the hook replaces it with a summary
table and every command's `--help`, exactly as `fleet ... --help` prints it
on an 80-column terminal. The commands are found the way `fleet` itself finds
them: the group's `list_commands` and `get_command`, so fleet's own commands
and those installed projects add through the `fleet.commands` entry points
(the reference fleet's `demo` and `standins`) are all there, and a command
added tomorrow appears without anyone editing the page. A command that is
listed but cannot be loaded fails the build.

`tests/unit/test_docs_cli_reference.py` checks the page against `fleet --help`
run as a user would run it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import click

#: Where in docs/cli.md the reference goes.
MARKER = "<!-- fleet-cli-reference -->"

#: The page that holds the marker.
PAGE = "cli.md"

#: Help is wrapped as on a terminal of this width, so the page does not depend on
#: the width of the terminal that ran the build.
WIDTH = 80


class Entry(NamedTuple):
    """One command of the tree: its path (`fleet dlq show`), depth and help text."""

    path: str
    depth: int
    short_help: str
    help: str


def walk(
    command: click.Command, name: str = "fleet", parent: click.Context | None = None
) -> Iterator[Entry]:
    """Every command under `command`, depth first, in the order `--help` lists them.

    Raises:
        RuntimeError: a group lists a command it cannot load (a broken entry point).
    """
    ctx = click.Context(
        command, info_name=name, parent=parent, terminal_width=WIDTH, **command.context_settings
    )
    depth = 0 if parent is None else len(ctx.command_path.split()) - 1
    yield Entry(
        path=ctx.command_path,
        depth=depth,
        short_help=command.get_short_help_str(limit=200),
        help=command.get_help(ctx),
    )
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is None:
                raise RuntimeError(
                    f"{ctx.command_path} lists {sub_name!r} but cannot load it: "
                    "is its entry point broken?"
                )
            yield from walk(sub, sub_name, ctx)


def entries() -> list[Entry]:
    """The whole `fleet` command tree, plugins included."""
    from workers.cli import cli

    return list(walk(cli))


def render(tree: list[Entry] | None = None) -> str:
    """The reference as Markdown: a summary table, then a section per command."""
    tree = entries() if tree is None else tree
    lines = ["| command | what it does |", "|---|---|"]
    for entry in tree[1:]:
        anchor = entry.path.replace(" ", "-")
        lines.append(f"| [`{entry.path}`](#{anchor}) | {entry.short_help} |")
    lines.append("")
    for entry in tree:
        heading = "#" * min(2 + max(entry.depth - 1, 0), 4)
        lines += [f"{heading} {entry.path}", "", "```text", entry.help.rstrip(), "```", ""]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: put the reference into docs/cli.md."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise RuntimeError(f"docs/{PAGE} has lost its marker {MARKER}")
    return markdown.replace(MARKER, render())
