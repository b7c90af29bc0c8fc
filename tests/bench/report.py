"""The run's report: the machine, the command, the table, the targets; and the JSON.

Ratios divide a row's median by its baseline's median in the same scenario,
so for msg/s above 1.00x is faster than the baseline, and for ms and MiB below
1.00x is better.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.bench.config import Config
from tests.bench.results import TARGETS, Series, Skipped, ceiling_shares, ratio

QUICK_NOTE = (
    "--quick: short measurements (a few thousand messages, little warm-up): "
    "these figures are a smoke test only, not a result"
)

COLUMNS = ("scenario", "contender", "median", "min", "max", "unit", "ratio", "vs", "cpu", "others")
RIGHT = {"median", "min", "max", "ratio", "cpu", "others"}


def render(
    machine: dict[str, str],
    command: str,
    series: list[Series],
    skipped: Sequence[Skipped],
    *,
    quick: bool = False,
) -> str:
    """The whole report as text; a --quick run's says its figures are a smoke test."""
    lines = [
        "fleet benchmark",
        "machine: "
        + ", ".join(
            [
                f"{machine['cores']} cores",
                machine["cpu"],
                machine["os"],
                f"Python {machine['python']}",
                f"RabbitMQ {machine['rabbitmq']} (Erlang {machine['erlang']})",
            ]
        ),
        f"libraries: {machine['libraries']}",
        f"load average: {machine['load at start']} at start, {machine.get('load at end')} at end",
        f"command: {command}",
        *([QUICK_NOTE] if quick else []),
        "",
        table(series),
    ]
    for skip in skipped:
        lines.append(f"skipped {skip.scenario}: {skip.reason}")
    shares = ceilings(series)
    if shares:
        lines += ["", shares]
    lines += ["", targets(series)]
    if quick:
        lines += ["", QUICK_NOTE]
    return "\n".join(lines)


def table(series: list[Series]) -> str:
    """One line per row, each scenario's contenders together, in the order they ran."""
    rows: list[tuple[str, ...]] = [COLUMNS]
    for row in grouped(series):
        value = ratio(row, series)
        rows.append(
            (
                row.scenario,
                row.contender,
                _number(row.median, row.unit),
                _number(row.low, row.unit),
                _number(row.high, row.unit),
                row.unit,
                "baseline" if row.contender == row.baseline else _ratio(value),
                "" if row.contender == row.baseline else row.baseline,
                f"{row.cpu_median:.0%}" if row.cpu_median is not None else "",
                f"{row.others_median:.2f}" if row.others_median is not None else "",
            )
        )
        if row.failures:
            rows.append(("", f"  {len(row.failures)} round(s) failed", *[""] * 8))
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    out = []
    for r in rows:
        cells = [
            cell.rjust(w) if name in RIGHT else cell.ljust(w)
            for cell, w, name in zip(r, widths, COLUMNS, strict=True)
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def grouped(series: list[Series]) -> list[Series]:
    """Rows ordered by their scenario's first appearance, then as they came."""
    first: dict[str, int] = {}
    for position, row in enumerate(series):
        first.setdefault(row.scenario, position)
    return sorted(series, key=lambda row: first[row.scenario])


def targets(series: list[Series]) -> str:
    """The issues' targets with the measured ratios."""
    lines = ["targets (issues 6, 17, 18, 21):"]
    for target in TARGETS:
        value, met = target.measure(series)
        verdict = "not measured" if met is None else ("met" if met else "NOT met")
        lines.append(f"  {target!s:<48} {_ratio(value):>7}  {verdict}")
    return "\n".join(lines)


def ceilings(series: list[Series]) -> str:
    """fleet's drain as a share of the C client's ceiling, per queue type ("" if not run)."""
    shares = ceiling_shares(series)
    if not shares:
        return ""
    lines = ["share of the C client's ceiling (median ÷ the C client's median):"]
    for scenario, contender, share in shares:
        value = "-" if share is None else f"{share:.0%}"
        lines.append(f"  {f'{scenario}: {contender}':<40} {value:>5}")
    return "\n".join(lines)


def write_json(
    path: Path,
    *,
    config: Config,
    machine: dict[str, str],
    series: list[Series],
    skipped: Sequence[Skipped],
    started: str,
    seconds: float,
) -> None:
    """Everything measured, for comparison over time."""
    data: dict[str, Any] = {
        "started": started,
        "seconds": round(seconds, 1),
        "command": config.command,
        "quick": config.quick,
        "rounds": config.rounds,
        "steady_rounds": config.steady_rounds,
        "sizes": vars(config.sizes),
        "machine": machine,
        "results": [
            {
                "scenario": s.scenario,
                "contender": s.contender,
                "unit": s.unit,
                "higher_is_better": s.higher_is_better,
                "median": s.median,
                "min": s.low,
                "max": s.high,
                "baseline": s.baseline,
                "ratio": ratio(s, series),
                "samples": s.samples,
                "cpu": s.cpu,
                "other_load": s.others,
                "failures": s.failures,
                "details": s.details,
            }
            for s in series
        ],
        "skipped": [{"scenario": s.scenario, "reason": s.reason} for s in skipped],
        "ceiling_shares": [
            {"scenario": scenario, "contender": contender, "share": share}
            for scenario, contender, share in ceiling_shares(series)
        ],
        "targets": [
            {"target": str(t), "ratio": value, "met": met}
            for t in TARGETS
            for value, met in [t.measure(series)]
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "msg/s":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.2f}"
    if unit.startswith("KiB"):
        return f"{value:,.0f}"
    return f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"
