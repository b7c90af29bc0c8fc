"""Commands of installed projects join `fleet` through the `fleet.commands` entry
points: the reference fleet adds `demo` and `standins`, and fleet imports it by name
nowhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from workers.cli import COMMANDS, plugins

ROOT = Path(__file__).resolve().parents[2]


def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def test_the_reference_fleets_commands_come_from_its_entry_points() -> None:
    """`demo` and `standins` are plugins, not fleet's own commands."""
    assert {"demo", "standins"} <= set(plugins())
    assert not {"demo", "standins"} & set(COMMANDS)
    assert plugins()["standins"].value == "fulfilment.cli.standins:standins"


def test_plugins_are_listed_and_run_like_fleets_own_commands() -> None:
    """`fleet --help` lists them; `fleet standins --help` loads one."""
    listing = fleet("--help")
    help_text = fleet("standins", "--help")
    assert listing.returncode == 0, listing.stderr
    assert [line.split()[0] for line in listing.stdout.splitlines() if line.startswith("  d")] == [
        "demo",
        "dlq",
    ]
    assert help_text.returncode == 0, help_text.stderr
    assert "run" in help_text.stdout


def test_the_framework_imports_no_example() -> None:
    """No module of contracts/, topology/ or workers/ names the reference fleet."""
    importing = re.compile(r"^\s*(import|from) +[a-z_.]*fulfilment", re.M)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("contracts", "topology", "workers")
        for path in (ROOT / folder).rglob("*.py")
        if importing.search(path.read_text())
    ]
    assert offenders == []
