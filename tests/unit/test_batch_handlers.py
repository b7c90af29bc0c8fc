"""Batch handlers without a broker: how they are declared, each mistake as one line
naming its path, how deliveries are gathered, and the memory inbox's batch claims."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner, Result

from contracts import Event
from topology import loads
from workers.context import Context
from workers.errors import WorkerError
from workers.runtime.batching import Gatherer, Member, batch_problems
from workers.runtime.claims import MemoryClaims
from workers.runtime.delivery import Delivery
from workers.runtime.outgoing import outgoing_event
from workers.runtime.service import WorkerSettings, run_worker
from workers.runtime.shutdown import Shutdown
from workers.runtime.timeline import EventNote
from workers.worker import Worker

ROOT = Path(__file__).resolve().parents[2]


class RowArrived(Event, frozen=True):
    """A test-only event taken in batches."""

    __routing_key__ = "row.arrived"

    n: int


class RowStored(Event, frozen=True):
    """A test-only follow-on of a batch."""

    __routing_key__ = "row.stored"

    count: int


class TestDeclaration:
    def test_a_batch_handler_is_registered_with_its_size_wait_and_emits(self) -> None:
        # Given a worker with one batch handler
        loader = Worker("loader")

        @loader.handles_batch(RowArrived, max_size=100, max_wait=timedelta(milliseconds=50))
        async def store(events: list[RowArrived], ctx: Context) -> RowStored:
            return RowStored(count=len(events))

        # Then it is the handler of its type, batched, and its emits come from the annotation
        [spec] = loader.handlers
        assert loader.batches == [spec]
        assert spec.batch is not None
        assert (spec.batch.max_size, spec.batch.max_wait) == (100, 0.05)
        assert spec.batch.function is store
        assert spec.emits == (RowStored,)
        assert repr(spec) == f"<handler {store.__qualname__} for RowArrived>"

    async def test_its_single_message_path_calls_it_with_a_one_element_list(self) -> None:
        loader = Worker("loader")
        seen: list[list[RowArrived]] = []

        @loader.handles_batch(RowArrived)
        async def store(events: list[RowArrived], ctx: Context) -> None:
            seen.append(events)

        [spec] = loader.handlers
        ctx = Context(
            worker="loader", queue="q", event_type="RowArrived", message_id="m", correlation_id="m"
        )
        await spec.function(RowArrived(n=7), ctx)
        assert seen == [[RowArrived(n=7)]]

    def test_the_defaults_are_500_and_200_ms_and_a_float_is_seconds(self) -> None:
        loader = Worker("loader")

        @loader.handles_batch(RowArrived)
        async def store(events: list[RowArrived], ctx: Context) -> None: ...

        other = Worker("other")

        @other.handles_batch(RowArrived, max_wait=1.5)
        async def store_slowly(events: list[RowArrived], ctx: Context) -> None: ...

        [default], [floated] = loader.handlers, other.handlers
        assert default.batch is not None
        assert floated.batch is not None
        assert (default.batch.max_size, default.batch.max_wait) == (500, 0.2)
        assert floated.batch.max_wait == 1.5

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            (
                {"max_size": 0},
                "worker 'loader' handles_batch(RowArrived): max_size must be a whole number "
                "of at least 1, got 0",
            ),
            (
                {"max_size": 2.5},
                "worker 'loader' handles_batch(RowArrived): max_size must be a whole number "
                "of at least 1, got 2.5",
            ),
            (
                {"max_wait": timedelta(0)},
                "worker 'loader' handles_batch(RowArrived): max_wait must be above zero, "
                "got datetime.timedelta(0)",
            ),
            (
                {"max_wait": -1.0},
                "worker 'loader' handles_batch(RowArrived): max_wait must be above zero, got -1.0",
            ),
        ],
    )
    def test_a_size_below_one_or_a_wait_not_above_zero_is_refused_in_one_line(
        self, kwargs: dict[str, object], message: str
    ) -> None:
        with pytest.raises(ValueError, match="handles_batch") as caught:
            Worker("loader").handles_batch(RowArrived, **kwargs)  # type: ignore[arg-type]
        assert str(caught.value) == message

    def test_a_type_with_a_handler_cannot_take_a_batch_handler_too(self) -> None:
        loader = Worker("loader")

        @loader.handles(RowArrived)
        async def one(event: RowArrived, ctx: Context) -> None: ...

        with pytest.raises(ValueError, match="already handles RowArrived with"):

            @loader.handles_batch(RowArrived)
            async def many(events: list[RowArrived], ctx: Context) -> None: ...


#: A worker of tests/fixtures/batch_worker.py (max_size 500) under settings to check.
TOPOLOGY = """
exchanges: {{orders: {{}}}}
queues:
  rows: {{bind: [{{exchange: orders, routing_key: order.placed}}]}}
workers:
  rows:
    module: tests.fixtures.batch_worker
    queue: rows
{settings}
"""


def rows_topology(settings: str) -> str:
    return TOPOLOGY.format(settings=settings)


def checked(settings: str, prefetch: int | None = None) -> list[str]:
    from tests.fixtures.batch_worker import rows

    topology = loads(rows_topology(settings))
    return [str(p) for p in batch_problems("rows", topology.workers["rows"], rows, prefetch)]


class TestChecks:
    def test_a_prefetch_of_at_least_max_size_is_fine(self) -> None:
        assert checked("    prefetch: 500") == []

    def test_a_prefetch_below_max_size_is_one_line_naming_the_prefetch(self) -> None:
        assert checked("    prefetch: 64") == [
            "workers.rows.prefetch: 64 is below max_size 500 of the batch handler for "
            "OrderPlaced: a batch could never fill; set prefetch to at least 500"
        ]

    def test_the_prefetch_in_force_is_the_clis_when_given(self) -> None:
        assert checked("    prefetch: 1000", prefetch=100) == [
            "workers.rows.prefetch: 100 is below max_size 500 of the batch handler for "
            "OrderPlaced: a batch could never fill; set prefetch to at least 500"
        ]

    def test_a_handler_rate_for_a_batch_type_is_one_line_naming_it(self) -> None:
        settings = "    prefetch: 500\n    handler_rates: {OrderPlaced: {rate: 10/s}}"
        assert checked(settings) == [
            "workers.rows.handler_rates.OrderPlaced: OrderPlaced has a batch handler, and "
            "handler_rates pace single calls: limit the worker's rate instead (it counts "
            "each message)"
        ]

    def test_a_worker_rate_is_allowed(self) -> None:
        assert checked("    prefetch: 500\n    rate: 1000/s") == []

    def test_the_worker_refuses_to_start_saying_so(self) -> None:
        topology = loads(rows_topology("    prefetch: 64"))
        settings = WorkerSettings.from_topology(topology, "rows", "amqp://127.0.0.1:1")
        settings.database_url = "postgresql://127.0.0.1:1/none"  # never reached
        with pytest.raises(WorkerError) as caught:
            asyncio.run(run_worker(settings, Shutdown()))
        assert str(caught.value).startswith("workers.rows.prefetch: 64 is below max_size 500")

    def test_topology_check_prints_the_line_and_fails(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
    ) -> None:
        path = tmp_path / "fleet.yaml"
        path.write_text(rows_topology("    prefetch: 64"))
        monkeypatch.syspath_prepend(str(ROOT))
        result = fleet("topology", "check", "--file", str(path))
        assert result.exit_code == 1, result.output
        assert (
            "workers.rows.prefetch: 64 is below max_size 500 of the batch handler for "
            "OrderPlaced" in result.output
        )


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The `fleet` group configures structlog for the process; put the old configuration back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def fleet(*args: str) -> Result:
    from workers.cli import _register_commands, cli

    _register_commands()
    return CliRunner().invoke(cli, args, prog_name="fleet")


def ctx_of(n: int) -> Context:
    return Context(
        worker="loader", queue="q", event_type="RowArrived", message_id=f"m-{n}", correlation_id="c"
    )


class Runs:
    """A batch runner that records the batches it was given and answers `result`."""

    def __init__(self, result: bool | Exception = True):
        self.result = result
        self.batches: list[list[int]] = []

    async def __call__(self, members: list[Member]) -> bool:
        self.batches.append([m.event for m in members])
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


async def joined(gatherer: Gatherer[object], events: range) -> list[bool]:
    delivery = Delivery.__new__(Delivery)  # the gatherer only carries it
    return list(await asyncio.gather(*(gatherer.join(n, ctx_of(n), delivery) for n in events)))


class TestGathering:
    async def test_a_full_batch_runs_at_once_and_the_rest_waits_for_max_wait(self) -> None:
        runs = Runs()
        gatherer: Gatherer[object] = Gatherer(3, 0.05, runs)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await joined(gatherer, range(7)) == [True] * 7
        assert runs.batches == [[0, 1, 2], [3, 4, 5], [6]]
        assert loop.time() - started >= 0.05  # the last one waited for max_wait
        assert gatherer.forming == 0

    async def test_a_batch_that_fails_or_raises_sends_each_member_on_alone(self) -> None:
        for result in (False, RuntimeError("the database went away")):
            runs = Runs(result)
            gatherer: Gatherer[object] = Gatherer(2, 0.01, runs)
            assert await joined(gatherer, range(2)) == [False, False]
            assert runs.batches == [[0, 1]]


def note(message_id: str) -> EventNote:
    return EventNote("c", message_id, None, "RowArrived", "loader", "processed", [])


class TestMemoryBatchClaims:
    async def test_ids_seen_before_or_twice_in_the_batch_are_left_out(self) -> None:
        claims = MemoryClaims()
        async with claims.claim("loader", "m-1"):
            pass
        async with claims.claim_batch(
            "loader", [note("m-1"), note("m-2"), note("m-2"), note("m-3")]
        ) as claim:
            assert claim.fresh == ["m-2", "m-3"]
        async with claims.claim_batch("loader", [note("m-3"), note("m-4")]) as claim:
            assert claim.fresh == ["m-4"]

    async def test_the_follow_ons_are_replayed_for_a_duplicate_of_the_batch(self) -> None:
        claims = MemoryClaims()
        stored = outgoing_event(
            RowStored(count=2), exchange="x", message_id="f-1", correlation_id="c"
        )
        async with claims.claim_batch("loader", [note("m-1"), note("m-2")]) as claim:
            claim.keep([stored])
        async with claims.claim_batch("loader", [note("m-1"), note("m-9")]) as claim:
            assert (claim.fresh, claim.replay) == (["m-9"], [stored])

    async def test_a_batch_that_raised_is_not_remembered(self) -> None:
        claims = MemoryClaims()
        with pytest.raises(RuntimeError):
            async with claims.claim_batch("loader", [note("m-1")]):
                raise RuntimeError("the handler failed")
        async with claims.claim_batch("loader", [note("m-1")]) as claim:
            assert claim.fresh == ["m-1"]
