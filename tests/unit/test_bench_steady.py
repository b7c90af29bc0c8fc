"""The benchmark's steady-state measurement (tests/bench): the warm-up outside the
clock, the resident-set growth, the C-client ceiling and the default run's sizes.

The bench itself runs on demand (`python -m tests.bench`); these check its
arithmetic and its command lines without a broker.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.bench.cli import parse
from tests.bench.contenders import cclient, fleet_cli
from tests.bench.probe import Probe
from tests.bench.protocol import RESULT, Job, Outcome, decode_outcome, encode_job
from tests.bench.results import Series, ceiling_shares
from tests.bench.scenarios import ON_DEMAND, SCENARIOS


def test_the_clock_starts_after_the_warm_up() -> None:
    probe = Probe(10, warmup=4)
    for _ in range(3):
        probe.tick()
    assert probe.first == 0.0  # still warming up
    probe.tick()
    started = probe.first
    assert started > 0.0
    for _ in range(6):
        probe.tick()
    assert probe.first == started
    outcome = probe.outcome(started + 2.0, probe.cpu_first + 1.0)
    assert (outcome.count, outcome.warmup, outcome.timed) == (10, 4, 6)
    assert outcome.rate == pytest.approx(3.0)  # 6 timed messages in 2 s
    assert outcome.rss_warm_kb > 0
    assert outcome.rss_end_kb > 0


def test_without_warm_up_the_clock_starts_at_the_first_delivery() -> None:
    probe = Probe(5)
    probe.tick()
    assert probe.first > 0.0
    for _ in range(4):
        probe.tick()
    outcome = probe.outcome(probe.first + 1.0, probe.cpu_first)
    assert (outcome.warmup, outcome.timed, outcome.rate) == (0, 5, pytest.approx(5.0))


def test_rss_growth_is_per_ten_thousand_timed_messages() -> None:
    grown = Outcome(
        count=100_000,
        seconds=9.0,
        cpu_seconds=8.0,
        max_rss_kb=0,
        warmup=10_000,
        rss_warm_kb=40_000,
        rss_end_kb=40_900,
    )
    assert grown.rss_growth_kb == pytest.approx(100.0)  # 900 KiB over 90,000 messages
    unmeasured = Outcome(count=100, seconds=1.0, cpu_seconds=1.0, max_rss_kb=0)
    assert unmeasured.rss_growth_kb is None


def _row(scenario: str, contender: str, *samples: float) -> Series:
    return Series(scenario, contender, "msg/s", True, "aio-pika", samples=list(samples))


def test_fleet_is_reported_as_a_share_of_the_c_client() -> None:
    rows = [
        _row("drain", "fleet", 9_000, 10_000, 11_000),
        _row("drain", "C client", 20_000, 25_000),
        _row("drain, quorum queue", "fleet", 6_000),
    ]
    shares = {(s, c): share for s, c, share in ceiling_shares(rows)}
    assert shares[("drain", "fleet")] == pytest.approx(10_000 / 22_500)
    assert shares[("drain", "fleet worker run")] is None  # not measured: no share
    assert shares[("drain, quorum queue", "fleet")] is None  # the C client was left out
    assert ceiling_shares([_row("saga step", "fleet", 1.0)]) == []


def test_the_c_client_gets_the_vhost_and_the_counts() -> None:
    job = Job(
        contender=cclient.KEY,
        role="drain",
        url="amqp://bench:s%40cret@broker.local:5673/fleet-bench-x%2Fy",
        queue="bench-drain",
        expected=100_000,
        warmup_messages=10_000,
        prefetch=256,
    )
    argv = list(cclient.command(job, Path("/cache/drain")).argv)
    assert argv == [
        "/cache/drain",
        "broker.local",
        "5673",
        "bench",
        "s@cret",
        "fleet-bench-x/y",
        "bench-drain",
        "100000",
        "10000",
        "256",
    ]


def test_no_compiler_leaves_the_c_client_out_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CC", "no-such-compiler-for-the-bench")
    with pytest.raises(cclient.Unavailable, match="no C compiler"):
        asyncio.run(cclient.build(cache=tmp_path))


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_missing_librabbitmq_headers_leave_the_c_client_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CC", raising=False)
    source = tmp_path / "absent.c"
    source.write_text("#include <amqp_not_installed.h>\nint main(void) { return 0; }\n")
    with pytest.raises(cclient.Unavailable, match="librabbitmq headers missing"):
        asyncio.run(cclient.build(source, cache=tmp_path / "cache"))


@pytest.mark.skipif(
    shutil.which("cc") is None or not Path("/usr/include/amqp.h").exists(),
    reason="no C compiler or no librabbitmq headers",
)
def test_the_c_client_builds_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CC", raising=False)
    binary = asyncio.run(cclient.build(cache=tmp_path))
    assert binary.is_file()
    assert binary.stat().st_mode & 0o111
    assert asyncio.run(cclient.build(cache=tmp_path)) == binary  # cached by the source's hash


def test_fleet_worker_run_prints_its_result_when_done(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job = Job(contender=fleet_cli.KEY, role="drain", url="amqp://x/", expected=3)
    monkeypatch.setenv(fleet_cli.ENV, encode_job(job))
    probe = fleet_cli.probe_from_environment()
    probe.tick()
    probe.tick()
    assert capsys.readouterr().out == ""
    probe.tick()
    line = capsys.readouterr().out
    assert line.startswith(RESULT)
    assert line.endswith("\n")
    assert decode_outcome(line[len(RESULT) :]).count == 3


def test_fleet_worker_run_is_the_cli_on_the_bench_topology(tmp_path: Path) -> None:
    job = Job(contender=fleet_cli.KEY, role="saga", url="amqp://x/v", expected=3)
    command = fleet_cli.command(job, tmp_path / "fleet.yaml")
    argv = list(command.argv)
    assert argv[argv.index("worker") :] == [
        "worker",
        "run",
        "saga",
        "--file",
        str(tmp_path / "fleet.yaml"),
        "--url",
        "amqp://x/v",
        "--metrics-port",
        "0",
    ]
    assert not command.handshake
    assert command.env is not None
    assert "FLEET_DATABASE_URL" not in command.env


def test_the_default_run_measures_steady_state() -> None:
    config = parse([])
    assert config.scenarios == ("drain", "saga")
    assert config.sizes.drain >= 100_000
    assert config.sizes.saga >= 100_000
    assert 0 < config.sizes.warmup < config.sizes.drain
    assert config.steady_rounds == 3
    assert not config.quick
    assert not config.extras


def test_quick_and_all_run_every_scenario_but_the_on_demand_ones() -> None:
    every = tuple(s for s in SCENARIOS if s not in ON_DEMAND)
    quick = parse(["--quick"])
    assert quick.quick
    assert quick.scenarios == every
    assert quick.sizes.drain < 100_000
    everything = parse(["--all"])
    assert everything.scenarios == every
    assert everything.extras
