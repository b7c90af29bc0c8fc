"""fleet's pytest plugin from the outside: a team's project of its own (a bakery, with
its own fleet.yaml, contracts and workers, nothing of the reference fleet's), and
its tests, run by pytest in a subprocess exactly as the team runs them: no conftest,
no PYTHONPATH, the plugin found through its entry point.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest

PYTEST = Path(sys.executable).with_name("pytest")

PROJECT = {
    "pyproject.toml": """
        [project]
        name = "bakery"
        version = "0.1.0"

        [tool.pytest.ini_options]
        asyncio_mode = "auto"
        asyncio_default_fixture_loop_scope = "function"
        asyncio_default_test_loop_scope = "function"
        """,
    "fleet.yaml": """
        exchanges:
          bakery: {}
          baked: {}
        queues:
          ovens:
            type: classic
            bind: [{exchange: bakery, routing_key: bread.ordered}]
            retry: {attempts: 2, backoff: 5ms, max_backoff: 10ms, delays: [200ms]}
          ledger:
            type: classic
            bind: [{exchange: baked, routing_key: bread.baked}]
          deliveries:
            type: classic
            bind: [{exchange: baked, routing_key: "bread.#"}]
        workers:
          ovens:
            module: bakery.ovens
            queue: ovens
            publish_to: baked
          ledger:
            module: bakery.ledger
            queue: ledger
        """,
    "bakery/__init__.py": "",
    "bakery/events.py": '''
        """The bakery's contracts."""

        from contracts import Event


        class BreadOrdered(Event, frozen=True, kw_only=True):
            __routing_key__ = "bread.ordered"

            order_id: str
            loaves: int
            flour: str = "wheat"


        class BreadBaked(Event, frozen=True, kw_only=True):
            __routing_key__ = "bread.baked"

            order_id: str
            loaves: int
        ''',
    "bakery/ovens.py": '''
        """The ovens: each order is baked, unless its flour is sawdust."""

        from bakery.events import BreadBaked, BreadOrdered
        from workers import Context, Worker

        ovens = Worker("ovens")


        @ovens.handles(BreadOrdered)
        async def bake(event: BreadOrdered, ctx: Context) -> BreadBaked | None:
            if event.flour == "sawdust":
                raise RuntimeError("the oven refuses sawdust")
            if event.loaves == 0:
                return None
            return BreadBaked(order_id=event.order_id, loaves=event.loaves)
        ''',
    "bakery/ledger.py": '''
        """The ledger: books every baked order in its own table, through ctx.db."""

        from bakery.events import BreadBaked
        from workers import Context, Resources, Worker

        ledger = Worker("ledger")


        @ledger.on_startup
        async def create_table(resources: Resources) -> None:
            await resources.pool.execute(
                "CREATE TABLE IF NOT EXISTS ledger (order_id text PRIMARY KEY, loaves int)"
            )


        @ledger.handles(BreadBaked)
        async def book(event: BreadBaked, ctx: Context) -> None:
            await ctx.db.execute(
                "INSERT INTO ledger VALUES ($1, $2) ON CONFLICT DO NOTHING",
                event.order_id,
                event.loaves,
            )
        ''',
    "tests/test_ovens.py": '''
        """The bakery's workers, tested as a team does with fleet's pytest plugin."""

        import asyncpg

        from bakery.events import BreadBaked, BreadOrdered
        from bakery.ovens import bake, ovens
        from workers import testing
        from workers.pytest_plugin import FleetBroker


        class TestTheOvensAlone:
            async def test_an_order_is_baked(self) -> None:
                """The handler answers an order with its loaves baked."""
                # When
                events = await testing.call(ovens, BreadOrdered(order_id="o-1", loaves=2))
                # Then
                assert events == [BreadBaked(order_id="o-1", loaves=2)]

            async def test_an_order_of_no_loaves_bakes_nothing(self) -> None:
                """None is no follow-on event."""
                # Given
                ctx = testing.context(message_id="m-0")
                # When
                result = await bake(BreadOrdered(order_id="o-0", loaves=0), ctx)
                # Then
                assert testing.emitted(result) == []


        class TestTheOvensOnTheBroker:
            async def test_an_order_is_baked_and_reaches_deliveries(
                self, fleet_broker: FleetBroker
            ) -> None:
                """The follow-on goes out on `baked` with the saga's ids, into `deliveries`."""
                # Given
                async with fleet_broker.running("ovens"), fleet_broker.tap("baked") as baked:
                    # When
                    message_id = await fleet_broker.publish(BreadOrdered(order_id="o-1", loaves=3))
                    # Then
                    assert await baked.next(BreadBaked) == BreadBaked(order_id="o-1", loaves=3)
                delivered = await fleet_broker.take("deliveries", BreadBaked)
                assert delivered == BreadBaked(order_id="o-1", loaves=3)
                [published] = baked.received
                assert published.correlation_id == message_id
                assert published.headers["causation-id"] == message_id

            async def test_an_oven_that_keeps_failing_parks_the_order(
                self, fleet_broker: FleetBroker
            ) -> None:
                """Sawdust fails every attempt: retried in process and after 200 ms, then parked."""
                # Given
                async with fleet_broker.running("ovens"):
                    # When
                    message_id = await fleet_broker.publish(
                        BreadOrdered(order_id="o-2", loaves=1, flour="sawdust")
                    )
                    # Then
                    parked = await fleet_broker.dead_lettered("ovens", reason="retries-exhausted")
                assert parked.message_id == message_id
                assert parked.attempts == 4
                assert parked.error == "RuntimeError: the oven refuses sawdust"

            async def test_a_body_that_is_not_json_is_parked_as_a_decode_error(
                self, fleet_broker: FleetBroker
            ) -> None:
                """Poison from a careless producer is parked at once, as it came."""
                # Given
                async with fleet_broker.running("ovens"):
                    # When
                    message_id = await fleet_broker.publish_body(
                        "bakery", "bread.ordered", b"{not json", type="BreadOrdered"
                    )
                    # Then
                    parked = await fleet_broker.dead_lettered("ovens", reason="decode")
                assert (parked.message_id, parked.body) == (message_id, b"{not json")

            async def test_a_worker_process_bakes_as_the_one_in_process_does(
                self, fleet_broker: FleetBroker
            ) -> None:
                """`fleet worker run ovens`, a real process, answers the same."""
                # Given
                fleet_broker.process("ovens")
                async with fleet_broker.tap("baked") as baked:
                    # When
                    await fleet_broker.publish(BreadOrdered(order_id="o-4", loaves=1))
                    # Then
                    assert await baked.next(BreadBaked) == BreadBaked(order_id="o-4", loaves=1)

            async def test_the_ledger_books_each_baked_order_in_its_database(
                self, fleet_broker: FleetBroker
            ) -> None:
                """With the test's database, what the ledger wrote through ctx.db is there."""
                # Given
                async with fleet_broker.running("ovens", "ledger", database=True):
                    # When
                    await fleet_broker.publish(BreadOrdered(order_id="o-5", loaves=2))

                    # Then
                    async def booked() -> int | None:
                        db = await asyncpg.connect(fleet_broker.database())
                        try:
                            return await db.fetchval(
                                "SELECT loaves FROM ledger WHERE order_id = $1", "o-5"
                            )
                        finally:
                            await db.close()

                    assert await testing.eventually(booked, what="o-5 in the ledger") == 2
        ''',
    "tests/test_expected_wrongly.py": '''
        """A test whose expectation is wrong: it must fail, saying what happened instead."""

        from workers.pytest_plugin import FleetBroker


        async def test_a_poison_body_expected_as_exhausted(fleet_broker: FleetBroker) -> None:
            async with fleet_broker.running("ovens"):
                await fleet_broker.publish_body("bakery", "bread.ordered", b"", type="BreadOrdered")
                await fleet_broker.dead_lettered("ovens", reason="retries-exhausted")
        ''',
}

BROKER_TESTS = {
    "test_an_order_is_baked_and_reaches_deliveries",
    "test_an_oven_that_keeps_failing_parks_the_order",
    "test_a_body_that_is_not_json_is_parked_as_a_decode_error",
    "test_a_worker_process_bakes_as_the_one_in_process_does",
    "test_the_ledger_books_each_baked_order_in_its_database",
    "test_a_poison_body_expected_as_exhausted",
}
UNIT_TESTS = {"test_an_order_is_baked", "test_an_order_of_no_loaves_bakes_nothing"}


@dataclass(frozen=True)
class Run:
    """One pytest run of the project: its exit code, its output, each test's outcome."""

    code: int
    output: str
    outcomes: dict[str, str]
    failures: dict[str, str]

    def explain(self) -> str:
        return f"pytest exited {self.code}:\n{self.output[-6000:]}"


def write_project(root: Path) -> Path:
    for name, text in PROJECT.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def run_pytest(project: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    """`pytest` in the project's directory, as the team runs it (no PYTHONPATH, no
    FLEET_TOPOLOGY: the plugin must find the project by itself)."""
    report = project / "report.xml"
    report.unlink(missing_ok=True)
    hidden = ("PYTHONPATH", "FLEET_TOPOLOGY", "PYTEST_ADDOPTS", "FLEET_DATABASE_URL")
    environment = {k: v for k, v in os.environ.items() if k not in hidden}
    process = subprocess.run(
        [str(PYTEST), "-p", "no:cacheprovider", f"--junit-xml={report}", "-rA", *args],
        cwd=project,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    outcomes: dict[str, str] = {}
    failures: dict[str, str] = {}
    if report.exists():
        for case in ElementTree.parse(report).iter("testcase"):
            name = case.get("name", "")
            outcomes[name] = "passed"
            for outcome in ("failure", "error", "skipped"):
                found = case.find(outcome)
                if found is not None:
                    outcomes[name] = outcome
                    failures[name] = found.get("message", "") + "\n" + (found.text or "")
    return Run(process.returncode, process.stdout + process.stderr, outcomes, failures)


@pytest.fixture(scope="module")
def bakery(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The bakery's whole suite, run once for this module's tests."""
    project = write_project(tmp_path_factory.mktemp("bakery"))
    return run_pytest(project)


class TestATeamsSuite:
    def test_it_runs_with_the_plugin_and_no_conftest(self, bakery: Run) -> None:
        """Every test of the project was collected and ran; only the wrong one failed."""
        assert set(bakery.outcomes) == BROKER_TESTS | UNIT_TESTS, bakery.explain()
        failed = {name for name, outcome in bakery.outcomes.items() if outcome != "passed"}
        assert failed == {"test_a_poison_body_expected_as_exhausted"}, bakery.explain()
        assert bakery.code == 1

    @pytest.mark.parametrize("test", sorted(UNIT_TESTS))
    def test_a_handler_is_tested_alone(self, bakery: Run, test: str) -> None:
        """`testing.call`, `context` and `emitted`, with no broker involved."""
        assert bakery.outcomes.get(test) == "passed", bakery.explain()

    def test_a_message_is_processed_and_its_follow_on_observed(self, bakery: Run) -> None:
        """In process: the follow-on seen by a tap, then taken off the queue it reached."""
        test = "test_an_order_is_baked_and_reaches_deliveries"
        assert bakery.outcomes.get(test) == "passed", bakery.explain()

    def test_a_failing_handler_is_retried_then_dead_lettered_as_exhausted(
        self, bakery: Run
    ) -> None:
        """`dead_lettered(reason="retries-exhausted")` after in-process and delayed retries."""
        test = "test_an_oven_that_keeps_failing_parks_the_order"
        assert bakery.outcomes.get(test) == "passed", bakery.explain()

    def test_a_poison_body_is_dead_lettered_as_a_decode_error(self, bakery: Run) -> None:
        """`publish_body` sends what no contract decodes; it is parked with reason decode."""
        test = "test_a_body_that_is_not_json_is_parked_as_a_decode_error"
        assert bakery.outcomes.get(test) == "passed", bakery.explain()

    def test_a_worker_runs_as_a_real_process_too(self, bakery: Run) -> None:
        """`fleet_broker.process` starts `fleet worker run` on the test's vhost."""
        test = "test_a_worker_process_bakes_as_the_one_in_process_does"
        assert bakery.outcomes.get(test) == "passed", bakery.explain()

    def test_a_worker_gets_a_fresh_database_of_its_own(self, bakery: Run) -> None:
        """`running(..., database=True)`: the inbox and ctx.db on the test's database."""
        test = "test_the_ledger_books_each_baked_order_in_its_database"
        assert bakery.outcomes.get(test) == "passed", bakery.explain()

    def test_a_wrong_expectation_fails_saying_what_happened_instead(self, bakery: Run) -> None:
        """The team's test fails with the plugin's message: the reason found and the error."""
        failure = bakery.failures.get("test_a_poison_body_expected_as_exhausted", "")
        assert "was parked with reason 'decode'" in failure, bakery.explain()
        assert "not 'retries-exhausted'" in failure, bakery.explain()


class TestConfiguration:
    def test_the_topology_file_may_be_named_in_the_ini(self, tmp_path: Path) -> None:
        """``fleet_topology`` points elsewhere than ./fleet.yaml; the modules still import."""
        # Given: the bakery with its topology under deploy/
        project = write_project(tmp_path / "bakery")
        (project / "deploy").mkdir()
        shutil.move(project / "fleet.yaml", project / "deploy" / "bakery.yaml")
        with (project / "pyproject.toml").open("a") as ini:
            ini.write('fleet_topology = "deploy/bakery.yaml"\n')
        # When
        run = run_pytest(project, "-k", "reaches_deliveries")
        # Then
        assert run.outcomes == {"test_an_order_is_baked_and_reaches_deliveries": "passed"}, (
            run.explain()
        )

    def test_an_unreachable_broker_stops_the_run_with_one_line(self, tmp_path: Path) -> None:
        """No test starts; one line says where RabbitMQ was looked for and how to start it."""
        # Given: a broker URL nothing listens on
        project = write_project(tmp_path / "bakery")
        port = free_port()
        # When
        run = run_pytest(project, env={"FLEET_TEST_AMQP_URL": f"amqp://guest:pw@127.0.0.1:{port}/"})
        # Then
        assert run.code == pytest.ExitCode.USAGE_ERROR, run.explain()
        lines = [line for line in run.output.splitlines() if "not reachable" in line]
        assert lines == [
            f"ERROR: RabbitMQ is not reachable at amqp://guest:***@127.0.0.1:{port}/: start it "
            "with `rabbitmq-server -detached` (or point FLEET_TEST_AMQP_URL at one)"
        ], run.explain()
        assert "Traceback" not in run.output
        assert run.outcomes == {}

    def test_handler_tests_need_no_broker(self, tmp_path: Path) -> None:
        """Tests that ask for no broker fixture run while RabbitMQ is down."""
        # Given
        project = write_project(tmp_path / "bakery")
        # When
        run = run_pytest(
            project, "-k", "Alone", env={"FLEET_TEST_AMQP_URL": f"amqp://127.0.0.1:{free_port()}/"}
        )
        # Then
        assert run.code == 0, run.explain()
        assert run.outcomes == dict.fromkeys(UNIT_TESTS, "passed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
