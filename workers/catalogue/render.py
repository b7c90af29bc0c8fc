"""The catalogue as HTML: a page of its own, or Markdown for the manual (MkDocs).

Both come from the same Jinja2 templates (`templates/`), with autoescape on:
every value, a contract's docstring and its field names included, is escaped;
nothing is marked safe.
"""

from __future__ import annotations

import html
import re
from functools import cache
from pathlib import Path

import jinja2

from workers.catalogue import Catalogue, ContractDoc

TEMPLATES = Path(__file__).with_name("templates")


@cache
def environment() -> jinja2.Environment:
    """The templates' environment: autoescaped, and strict about undefined names."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["anchor"] = anchor
    return env


def anchor(name: str) -> str:
    """The anchor a contract's section has (the first of that name)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "contract"


def render_page(catalogue: Catalogue) -> str:
    """A self-contained HTML page: an index of the contracts, then a section each."""
    return environment().get_template("page.html.j2").render(catalogue=catalogue)


def render_contract(contract: ContractDoc) -> str:
    """One contract's versions as an HTML fragment, without blank lines (so Markdown
    keeps it as one raw HTML block)."""
    module = environment().get_template("contract.html.j2").module
    fragment = str(getattr(module, "versions")(contract))  # noqa: B009  (a macro: no type)
    return "\n".join(line for line in fragment.splitlines() if line.strip())


def render_markdown(catalogue: Catalogue) -> str:
    """The catalogue as Markdown for MkDocs: a heading per contract (in the page's table of
    contents), its versions as the same HTML fragment the page has."""
    parts = []
    for contract in catalogue.contracts:
        parts += [f"## {_markdown_text(contract.name)} {{: #{contract.anchor} }}", ""]
        parts += [render_contract(contract), ""]
    return "\n".join(parts)


def _markdown_text(text: str) -> str:
    """Text for a Markdown heading: HTML escaped, Markdown's punctuation backslashed."""
    escaped = html.escape(text)
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", str(escaped))
