"""The alert rules, checked and unit-tested by Prometheus's own promtool.

`deploy/prometheus/alerts.test.yml` feeds each rule series and states when it
fires, with which labels and text; promtool evaluates it as Prometheus would.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus"


def promtool(*args: str, cwd: Path = RULES) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: `apt-get install prometheus` (.ci/setup installs it)")
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_fires_when_and_how_its_test_says() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def alert_names() -> list[str]:
    """Every alert of alerts.yml, in order."""
    rules = yaml.safe_load((RULES / "alerts.yml").read_text())
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_has_a_test() -> None:
    """A new alert without a promtool test fails here, not in production."""
    tests = yaml.safe_load((RULES / "alerts.test.yml").read_text())
    tested = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")  # a test that only says "silent" proves nothing
    }
    names = alert_names()
    assert "FleetWorkerDown" in names  # the file was read, not an empty list
    assert set(names) - tested == set()


def test_the_rule_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The tests bite: the stale-outbox alert at 10 minutes instead of 5 fails them."""
    rules = (RULES / "alerts.yml").read_text()
    assert "fleet_outbox_oldest_unsent_seconds) > 300" in rules
    (tmp_path / "alerts.yml").write_text(rules.replace("seconds) > 300", "seconds) > 600"))
    shutil.copy(RULES / "alerts.test.yml", tmp_path / "alerts.test.yml")
    result = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "FleetOutboxStale" in result.stdout + result.stderr
