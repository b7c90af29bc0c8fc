"""The page frame and small HTML helpers. Every value goes through `e` (html.escape)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from urllib.parse import urlencode

from workers.console.security import READ_ONLY, Session

NAV = (
    ("/", "Overview"),
    ("/failures", "Failures"),
    ("/sagas", "Sagas"),
    ("/topology", "Topology"),
    ("/audit", "Audit log"),
)

CSS = """
:root{--red:#c0392b;--yellow:#b7950b;--green:#1e8449;--grey:#666;--line:#ddd}
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}
header{background:#1f2d3d;color:#fff;padding:.5em 1em;display:flex;gap:1.5em;align-items:center}
header a{color:#cfe0f1;text-decoration:none}header a.on{color:#fff;font-weight:bold}
header .who{margin-left:auto;color:#aab}
main{padding:1em 1.5em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border-bottom:1px solid var(--line);padding:.25em .6em;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.dead td{color:var(--red);font-weight:bold}tr.missing td{color:var(--yellow)}
.red{color:var(--red)}.yellow{color:var(--yellow)}.green{color:var(--green)}.grey{color:var(--grey)}
pre{background:#f6f8fa;padding:.5em;overflow:auto;max-height:20em;white-space:pre-wrap}
details{margin:.3em 0}fieldset{border:1px solid var(--line);margin:.5em 0}
.group{border:1px solid var(--line);border-left:4px solid var(--red);padding:.5em 1em;margin:1em 0}
.note{color:var(--grey)}
.banner{background:#fdecea;padding:.5em 1em;border-left:4px solid var(--red)}
.ok{background:#e9f7ef;padding:.5em 1em;border-left:4px solid var(--green)}
button{cursor:pointer}textarea{width:100%;font-family:monospace}
"""


def e(value: object) -> str:
    """Escaped text for HTML content and quoted attributes."""
    return escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, session: Session | None, path: str, *, script: str = "") -> str:
    """A whole page: the navigation, then `body` (already HTML)."""
    links = "".join(
        f'<a href="{href}"{" class=on" if _on(path, href) else ""}>{label}</a>'
        for href, label in NAV
    )
    who = ""
    if session is not None:
        role = " (read-only)" if session.role == READ_ONLY else ""
        who = (
            f'<span class="who">{e(session.who)}{role} '
            f'<form method="post" action="/logout" style="display:inline">'
            f"{csrf_field(session)}<button>Sign out</button></form></span>"
        )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{e(title)} · fleet console</title><style>{CSS}</style></head><body>"
        f"<header><b>fleet console</b>{links}{who}</header><main><h1>{e(title)}</h1>"
        f"{body}</main>{f'<script>{script}</script>' if script else ''}</body></html>"
    )


def _on(path: str, href: str) -> bool:
    return path == href if href == "/" else path.startswith(href)


def csrf_field(session: Session | None) -> str:
    return f'<input type=hidden name=csrf value="{e(session.csrf)}">' if session else ""


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: Iterable[int] = (),
    classes: Iterable[str] | None = None,
    escaped: bool = False,
) -> str:
    """A table; cells are escaped unless `escaped` says they already are HTML."""
    right = set(numeric)
    head = "".join(
        f"<th{' class=n' if i in right else ''}>{e(h)}</th>" for i, h in enumerate(headers)
    )
    out = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    row_classes = list(classes) if classes is not None else None
    for n, row in enumerate(rows):
        cls = row_classes[n] if row_classes else ""
        cells = "".join(
            f"<td{' class=n' if i in right else ''}>{c if escaped else e(c)}</td>"
            for i, c in enumerate(row)
        )
        out.append(f"<tr{f' class={cls}' if cls else ''}>{cells}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def link(path: str, **query: str) -> str:
    shown = {k: v for k, v in query.items() if v}
    return path + ("?" + urlencode(shown) if shown else "")
