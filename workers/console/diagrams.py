"""Diagrams drawn on the server as inline SVG: no JavaScript, nothing to vendor.

`topology_svg` lays out the very flowchart `fleet topology graph` prints
(topology/graph.py's Mermaid text, parsed back), in columns: exchanges,
queues, workers, emitted events. `saga_svg` draws a saga's timeline as a
sequence diagram: one lane per worker, one arrow per handled event, from the
worker that emitted it to the one that handled it; retries and dead letters
marked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from workers.console.html import e
from workers.saga import Step

# -- topology ----------------------------------------------------------------------

_NODE = re.compile(
    r"^\s+(?P<id>[A-Za-z0-9_]+)(?P<open>\{\{|\[\(|\[\[|>|\[/)\"(?P<label>.*)\"(?:\}\}|\)\]|\]\]|\]|/\])$"
)
_EDGE = re.compile(
    r"^\s+(?P<a>[A-Za-z0-9_]+) (?P<arrow>-->|-\.->)(?:\|\"(?P<label>.*)\"\|)? (?P<b>[A-Za-z0-9_]+)$"
)
_COLUMN = {"ex": 0, "q": 1, "wh": 1, "w": 2, "ev": 3}
_FILL = {"ex": "#fdebd0", "q": "#d6eaf8", "wh": "#e8daef", "w": "#d5f5e3", "ev": "#fcf3cf"}
_W, _H, _GAP_X, _GAP_Y, _PAD = 200, 36, 110, 30, 20


@dataclass
class _Node:
    id: str
    kind: str
    label: str
    x: float = 0
    y: float = 0


@dataclass(frozen=True)
class _Edge:
    a: str
    b: str
    label: str
    dashed: bool


def parse_mermaid(text: str) -> tuple[dict[str, _Node], list[_Edge]]:
    """Nodes and edges of topology/graph.py's flowchart (that module's syntax only)."""
    nodes: dict[str, _Node] = {}
    edges: list[_Edge] = []
    for line in text.splitlines():
        if m := _NODE.match(line):
            kind = m["id"].split("_", 1)[0]
            nodes[m["id"]] = _Node(m["id"], kind, _unlabel(m["label"]))
        elif m := _EDGE.match(line):
            edges.append(_Edge(m["a"], m["b"], _unlabel(m["label"] or ""), m["arrow"] == "-.->"))
    return nodes, edges


def _unlabel(text: str) -> str:
    return text.replace("#35;", "#").replace("#quot;", '"')


def topology_svg(mermaid_text: str) -> str:
    """The flowchart as SVG, left to right; arrows back to an exchange curve below."""
    nodes, edges = parse_mermaid(mermaid_text)
    columns: dict[int, list[_Node]] = {}
    for node in nodes.values():
        columns.setdefault(_COLUMN.get(node.kind, 3), []).append(node)
    for col, members in columns.items():
        for row, node in enumerate(members):
            node.x = _PAD + col * (_W + _GAP_X)
            node.y = _PAD + row * (_H + _GAP_Y)
    width = _PAD * 2 + (max(columns, default=0) + 1) * (_W + _GAP_X)
    height = _PAD * 2 + max((len(m) for m in columns.values()), default=1) * (_H + _GAP_Y) + 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
        'font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#555"/>'
        "</marker></defs>",
    ]
    incoming: dict[str, int] = {}
    for edge in edges:
        a, b = nodes.get(edge.a), nodes.get(edge.b)
        if a is None or b is None:
            continue
        # Labels sit by the arrow's head, stacked when several arrows reach one node.
        slot = incoming.get(edge.b, 0)
        incoming[edge.b] = slot + 1 if edge.label else slot
        parts.append(_edge(a, b, edge, height, slot))
    for node in nodes.values():
        rx = 16 if node.kind in ("q", "ev") else 3
        parts.append(
            f'<g class="node {node.kind}" data-id="{e(node.id)}"><rect x="{node.x}" '
            f'y="{node.y}" width="{_W}" height="{_H}" rx="{rx}" '
            f'fill="{_FILL.get(node.kind, "#eee")}"'
            f' stroke="#555"/><text x="{node.x + _W / 2}" y="{node.y + _H / 2 + 4}" '
            f'text-anchor="middle">{e(_fit(node.label))}</text><title>{e(node.label)}</title></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _edge(a: _Node, b: _Node, edge: _Edge, height: float, slot: int) -> str:
    dash = ' stroke-dasharray="5,4"' if edge.dashed else ""
    title = f"<title>{e(edge.label)}</title>" if edge.label else ""
    if b.x > a.x:
        x1, y1, x2, y2 = a.x + _W, a.y + _H / 2, b.x, b.y + _H / 2
        mid = (x1 + x2) / 2
        path = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
        label = (
            f'<text x="{x2 - 4}" y="{b.y - 2 + slot * 10}" text-anchor="end" fill="#333" '
            f'font-size="9">{e(edge.label)}</text>'
            if edge.label and slot < 4
            else ""
        )
    else:  # back to an exchange: below the columns, its label on hover only
        x1, y1, x2, y2 = a.x + _W / 2, a.y + _H, b.x + _W / 2, b.y + _H
        low = height - 20
        path = f"M{x1},{y1} C{x1},{low} {x2},{low} {x2},{y2}"
        label = ""
    return (
        f'<g class="edge"><path d="{path}" fill="none" stroke="#777"{dash} '
        f'marker-end="url(#arrow)"/>{label}{title}</g>'
    )


def _fit(label: str, chars: int = 30) -> str:
    return label if len(label) <= chars else label[: chars - 1] + "…"


# -- saga ----------------------------------------------------------------------------

_OUTCOME = {"processed": "#1e8449", "retried": "#b7950b", "dead-lettered": "#c0392b"}
_MARK = {"processed": "", "retried": "↻ ", "dead-lettered": "✕ "}
_LANE, _ROW, _TOP = 170, 34, 50
CLIENT = "publisher"


@dataclass
class Arrow:
    """One handled event: from the lane that emitted it to the worker that handled it."""

    source: str
    target: str
    step: Step
    ms: int
    notes: list[str] = field(default_factory=list)


def arrows(steps: Sequence[Step]) -> list[Arrow]:
    """The timeline's rows as arrows, oldest first; an event no recorded step emitted
    comes from the publisher (a client outside the fleet)."""
    if not steps:
        return []
    start = min(s.at for s in steps)
    by_message: dict[str, list[Step]] = {}
    for step in steps:
        by_message.setdefault(step.message_id, []).append(step)
    out = []
    for step in steps:
        parent = by_message.get(step.causation_id or "", [])
        emitter = next(
            (p.worker for p in parent if p.outcome == "processed" and step.type in p.emitted),
            None,
        )
        ms = round((step.at - start).total_seconds() * 1000)
        out.append(Arrow(emitter or CLIENT, step.worker, step, ms))
    return out


def saga_svg(steps: Sequence[Step]) -> str:
    """The saga as a sequence diagram: lanes are workers, arrows are handled events."""
    rows = arrows(steps)
    lanes: list[str] = [CLIENT] if any(r.source == CLIENT for r in rows) else []
    for row in rows:
        for lane in (row.source, row.target):
            if lane not in lanes:
                lanes.append(lane)
    x = {lane: 90 + i * _LANE for i, lane in enumerate(lanes)}
    width = 90 + len(lanes) * _LANE
    height = _TOP + (len(rows) + 1) * _ROW
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="saga" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        "<defs>"
        + "".join(
            f'<marker id="to-{name}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="{colour}"/></marker>'
            for name, colour in _OUTCOME.items()
        )
        + "</defs>",
    ]
    for lane, lx in x.items():
        parts.append(
            f'<g class="lane"><rect x="{lx - 70}" y="8" width="140" height="26" rx="4" '
            f'fill="#eaf2f8" stroke="#555"/><text x="{lx}" y="26" text-anchor="middle" '
            f'font-weight="bold">{e(lane)}</text><line x1="{lx}" y1="34" x2="{lx}" '
            f'y2="{height - 6}" stroke="#bbb" stroke-dasharray="3,3"/></g>'
        )
    for n, row in enumerate(rows):
        y = _TOP + n * _ROW + 14
        outcome = row.step.outcome
        colour = _OUTCOME.get(outcome, "#555")
        dash = ' stroke-dasharray="6,4"' if outcome == "retried" else ""
        x1, x2 = x[row.source], x[row.target]
        label = f"{_MARK.get(outcome, '')}{row.step.type}"
        if row.step.detail and outcome != "processed":
            label += f" ({_fit(row.step.detail, 40)})"
        parts.append(f'<g class="step {e(outcome)}" data-outcome="{e(outcome)}">')
        parts.append(f'<text x="6" y="{y + 4}" fill="#666">+{row.ms}ms</text>')
        if x1 == x2:  # a worker handling an event it emitted itself: a loop
            parts.append(
                f'<path d="M{x1},{y - 6} h40 v14 h-38" fill="none" stroke="{colour}"{dash} '
                f'marker-end="url(#to-{e(outcome)})"/>'
            )
            tx: float = x1 + 46
            anchor = "start"
        else:
            parts.append(
                f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" '
                f'stroke-width="2"{dash} marker-end="url(#to-{e(outcome)})"/>'
            )
            tx, anchor = (x1 + x2) / 2, "middle"
        parts.append(
            f'<text x="{tx}" y="{y - 5}" text-anchor="{anchor}" fill="{colour}">{e(label)}</text>'
            f"<title>{e(row.step.message_id)}: {e(outcome)}"
            f"{' → ' + e(', '.join(row.step.emitted)) if row.step.emitted else ''}</title></g>"
        )
    parts.append("</svg>")
    return "".join(parts)
