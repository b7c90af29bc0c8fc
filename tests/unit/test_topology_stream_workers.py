"""Workers on a stream in the topology file: `from`, `consumer`, and the dead-letter
queue, failure exchange and permissions fleet derives for them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.unit.test_topology_load import problems_of
from topology import loads
from topology.access import worker_user
from topology.check import WorkerWiring
from topology.expand import expand
from topology.stream_start import StreamStart, parse_stream_start

BASE = (
    "exchanges: {orders: {type: topic}}\n"
    "queues:\n"
    "  events: {type: stream, bind: [{exchange: orders, routing_key: '#'}]}\n"
    "  work: {bind: [{exchange: orders, routing_key: '#'}]}\n"
    "  parts: {type: stream, partitions: 2, key: {field: customer_id}}\n"
    "workers:\n  reporting:\n    module: m\n    queue: events\n"
)


class TestFrom:
    @pytest.mark.parametrize(
        ("text", "kind", "value"),
        [
            ("first", "first", None),
            ("last", "last", None),
            ("next", "next", None),
            ("1234", "offset", 1234),
            ("0", "offset", 0),
            ("2026-12-01T08:00:00Z", "timestamp", 1_796_112_000_000),
            ("2026-12-01T08:00:00", "timestamp", 1_796_112_000_000),  # no zone: UTC
        ],
    )
    def test_a_start_is_a_name_an_offset_or_a_time(
        self, text: str, kind: str, value: int | None
    ) -> None:
        start = parse_stream_start(text)
        assert (start.kind, start.value) == (kind, value)

    def test_a_relative_start_is_resolved_when_the_worker_starts(self) -> None:
        """`2h` means two hours before the worker starts, not before the file was read."""
        start = parse_stream_start("2h")
        assert start.resolved(now_ms=10_000_000) == StreamStart("timestamp", 10_000_000 - 7_200_000)
        assert str(start) == "2h"

    def test_the_file_takes_each_form(self) -> None:
        for written, kind in (("first", "first"), ("17", "offset"), ("30m", "timestamp")):
            spec = loads(BASE + f"    from: {written}\n").workers["reporting"]
            assert spec.start is not None
            assert spec.start.kind == kind
        # YAML reads an unquoted ISO time as a datetime: taken as that time.
        spec = loads(BASE + "    from: 2026-12-01T08:00:00Z\n").workers["reporting"]
        moment = datetime(2026, 12, 1, 8, tzinfo=UTC)
        assert spec.start == StreamStart("timestamp", int(moment.timestamp() * 1000))

    @pytest.mark.parametrize("written", ["yesterday", "-3", "2x", "true"])
    def test_an_invalid_start_is_one_line_naming_its_path(self, written: str) -> None:
        [problem] = problems_of(BASE + f"    from: {written}\n")
        assert problem.startswith("workers.reporting.from: invalid start ")
        assert "write first, last, next, an offset (1234), how far back" in problem

    def test_from_on_a_queue_worker_is_refused(self) -> None:
        text = BASE.replace("queue: events", "queue: work") + "    from: first\n"
        assert problems_of(text) == [
            "workers.reporting.from: only a worker on a stream has a start; queue 'work' "
            "is quorum (remove it)"
        ]

    def test_an_empty_consumer_name_is_refused(self) -> None:
        assert problems_of(BASE + "    consumer: ' '\n") == [
            "workers.reporting.consumer: a consumer name cannot be empty"
        ]

    @pytest.mark.parametrize(
        ("setting", "path", "says"),
        [
            ("breaker: {failures: 3}", "breaker", "a stream worker has no circuit breaker"),
            ("order_by: customer_id", "order_by", "a stream worker keeps the stream's order"),
        ],
    )
    def test_queue_consumer_policies_are_refused_on_a_stream(
        self, setting: str, path: str, says: str
    ) -> None:
        [problem] = problems_of(BASE + f"    {setting}\n")
        assert problem.startswith(f"workers.reporting.{path}: {says}")


class TestDerived:
    def test_a_stream_worker_gets_a_dead_letter_queue_and_failure_exchange_of_its_own(
        self,
    ) -> None:
        """Many workers read one stream: each parks in `<stream>.<worker>.dead`."""
        resources = expand(loads(BASE))
        dead = {q.name: q for q in resources.queues}["events.reporting.dead"]
        assert dead.type == "quorum"
        assert "events.dead" not in {q.name for q in resources.queues}
        assert "events.reporting.failures" in {e.name for e in resources.exchanges}
        assert any(
            b.source == "events.reporting.failures"
            and b.destination == "events.reporting.dead"
            and b.routing_key == "events.reporting.dead"
            for b in resources.bindings
        )

    def test_a_stream_workers_user_reads_every_partition_and_declares_their_locks(self) -> None:
        topology = loads(BASE.replace("queue: events", "queue: parts") + "    consumer: r2\n")
        user = worker_user(topology, "reporting", WorkerWiring(handles=[], emits=[]))
        assert user.permissions.read == r"^(parts-0|parts-1)$"
        assert user.permissions.configure == (
            r"^(fleet\.lock\.parts-0\.r2|fleet\.lock\.parts-1\.r2)$"
        )
        assert user.permissions.write == r"^(parts-0|parts-1|parts\.reporting\.failures)$"
