"""``python -m tests.bench``: options → Config → every scenario → table and JSON.

Exit codes: 0 when every measurement ran (targets missed are reported, not
failures), 1 when the broker is unreachable or a measurement failed, 2 for a
usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.bench import config as sizes
from tests.bench.bench import Bench
from tests.bench.broker import BROKER_ERRORS, Management, Queues, vhost_url
from tests.bench.config import Config
from tests.bench.layout import bench_topology
from tests.bench.machine import describe, load
from tests.bench.process import py_spy
from tests.bench.report import render, write_json
from tests.bench.results import Series, Skip, Skipped
from tests.bench.scenarios import DEFAULT_SCENARIOS, ON_DEMAND, SCENARIOS

RESULTS = Path(__file__).resolve().parent / "results"
AMQP_URL = os.environ.get("FLEET_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("FLEET_TEST_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")
DATABASE_URL = os.environ.get(
    "FLEET_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

EXAMPLES = """
examples:
  python -m tests.bench                      the default run: steady-state drain and saga step
  python -m tests.bench --all                every scenario but scale (about 20 minutes)
  python -m tests.bench --quick              a smoke run of every scenario but scale
  python -m tests.bench --only drain,saga --rounds 7
  python -m tests.bench --only scale --cluster-url "$(scripts/cluster urls)"
  make bench ARGS="--quick --json /tmp/bench.json"
"""


def parse(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description="Benchmark fleet's runtime against bare aio-pika and FastStream.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test: few messages, every scenario"
    )
    parser.add_argument(
        "--all", action="store_true", help="every scenario but scale, not only drain and saga"
    )
    parser.add_argument(
        "--extras",
        action="store_true",
        help="the informational contenders too (fleet public API, aio-pika+uvloop)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive,
        help="rounds per scenario (default: drain and saga 3, the others 5; quick 3)",
    )
    parser.add_argument("--json", type=Path, help="results file (default tests/bench/results/)")
    parser.add_argument(
        "--only", type=_scenarios, help=f"comma-separated scenarios: {','.join(SCENARIOS)}"
    )
    parser.add_argument("--url", default=AMQP_URL, help="broker (env FLEET_TEST_AMQP_URL)")
    parser.add_argument(
        "--management-url", default=MANAGEMENT_URL, help="env FLEET_TEST_MANAGEMENT_URL"
    )
    parser.add_argument(
        "--database-url", default=DATABASE_URL, help="PostgreSQL (env FLEET_TEST_DATABASE_URL)"
    )
    parser.add_argument(
        "--cluster-url",
        default=os.environ.get("FLEET_BENCH_CLUSTER_URL"),
        help="the scale scenario's cluster: every node's AMQP URL, comma-separated "
        "(env FLEET_BENCH_CLUSTER_URL; `scripts/cluster urls` prints them)",
    )
    parser.add_argument(
        "--cluster-management-url", help="its management API (default: node 1's port + 10000)"
    )
    parser.add_argument(
        "--profile",
        type=_names,
        default=frozenset(),
        help="sample these contenders (comma-separated, e.g. fleet) with py-spy; collapsed "
        "stacks go to <results>-profiles/ (py-spy: `uv pip install py-spy`)",
    )
    args = parser.parse_args(argv)
    if args.only and args.all:
        parser.error("--all and --only exclude each other")
    every = tuple(s for s in SCENARIOS if s not in ON_DEMAND)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Config(
        sizes=sizes.QUICK if args.quick else sizes.DEFAULT,
        rounds=args.rounds or (sizes.QUICK_ROUNDS if args.quick else sizes.DEFAULT_ROUNDS),
        steady_rounds=args.rounds or (sizes.QUICK_ROUNDS if args.quick else sizes.STEADY_ROUNDS),
        quick=args.quick,
        scenarios=args.only or (every if args.all or args.quick else DEFAULT_SCENARIOS),
        amqp_url=args.url,
        management_url=args.management_url,
        database_url=args.database_url,
        json_path=args.json or RESULTS / f"{stamp}.json",
        command=_command(argv),
        extras=args.extras or args.all,
        cluster_url=args.cluster_url,
        cluster_management_url=args.cluster_management_url,
        profile=args.profile,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse(sys.argv[1:] if argv is None else argv)
    try:
        return asyncio.run(run(config))
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


async def run(config: Config) -> int:
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    clock = time.monotonic()
    series: list[Series] = []
    skipped: list[Skipped] = []
    logs = config.json_path.with_suffix("").with_name(config.json_path.stem + "-logs")
    logs.mkdir(parents=True, exist_ok=True)
    if config.profile and py_spy() is None:
        print("bench: --profile needs py-spy (`uv pip install py-spy`)", file=sys.stderr)
        return 2
    with Management(config.management_url) as management:
        try:
            machine = describe(management.overview())
        except httpx.HTTPError as exc:
            where = _host(config.management_url)
            print(
                f"bench: the RabbitMQ management API at {where} does not answer ({exc}); "
                "`make bench` starts RabbitMQ (.ci/services)",
                file=sys.stderr,
            )
            return 1
        user = urlsplit(config.amqp_url).username or "guest"
        vhost = management.create_vhost("fleet-bench", user)
        try:
            series, skipped = await _scenarios_on(config, vhost, logs)
        finally:
            if not management.delete_vhost(vhost):
                print(f"bench: could not delete vhost {vhost}; remove it by hand", file=sys.stderr)
    machine["load at end"] = load()
    print(render(machine, config.command, series, skipped, quick=config.quick))
    write_json(
        config.json_path,
        config=config,
        machine=machine,
        series=series,
        skipped=skipped,
        started=started,
        seconds=time.monotonic() - clock,
    )
    print(f"\nresults: {config.json_path}")
    if config.profile:
        profiles = config.json_path.with_suffix("").with_name(config.json_path.stem + "-profiles")
        print(f"profiles: {profiles} (python -m tests.bench.stacks {profiles}/*.txt)")
    failed = any(s.failures for s in series)
    if failed:
        print(f"child logs: {logs}")
    else:
        shutil.rmtree(logs, ignore_errors=True)
    return 1 if failed else 0


async def _scenarios_on(
    config: Config, vhost: str, logs: Path
) -> tuple[list[Series], list[Skipped]]:
    from topology.apply import apply

    url = vhost_url(config.amqp_url, vhost)
    await apply(bench_topology(), url, management_url=config.management_url)
    queues = await Queues.open(url)
    profiles = config.json_path.with_suffix("").with_name(config.json_path.stem + "-profiles")
    bench = Bench(config, url, queues, logs, profiles if config.profile else None)
    names = ", ".join(config.scenarios)
    rounds = f"{config.steady_rounds} rounds of the drain and saga step, {config.rounds} of others"
    bench.progress(f"vhost {vhost}; {rounds}; scenarios {names}")
    series: list[Series] = []
    skipped: list[Skipped] = []
    try:
        for position, name in enumerate(config.scenarios):
            try:
                series += await SCENARIOS[name](bench)
            except Skip as skip:
                skipped.append(Skipped(name, str(skip)))
                bench.progress(f"{name}: skipped: {skip}")
            except BROKER_ERRORS as exc:
                # Someone restarted the broker (or its listener) under the run.
                reason = f"aborted: lost the broker ({type(exc).__name__}: {exc})"
                skipped += [Skipped(n, reason) for n in config.scenarios[position:]]
                bench.progress(f"{name}: {reason}")
                break
    finally:
        with contextlib.suppress(*BROKER_ERRORS):
            await queues.close()
    return series, [*bench.notes, *skipped]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _names(text: str) -> frozenset[str]:
    return frozenset(n.strip() for n in text.split(",") if n.strip())


def _scenarios(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown) or '(none)'}; choose from {','.join(SCENARIOS)}"
        )
    return names


def _command(argv: list[str]) -> str:
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else "python"
    return shlex.join([python, "-m", "tests.bench", *argv])


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 15672}"
