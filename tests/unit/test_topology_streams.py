"""Streams in the topology: retention, super streams, and the problems of each."""

from __future__ import annotations

import pytest
from rstream.constants import OffsetType

from topology import TopologyInvalid, expand, loads
from topology.duration import Duration
from topology.plan import STREAM_RETENTION_NOTE, plan
from topology.resources import QueueDecl, Resources
from topology.size import ByteSize
from topology.streams import max_age
from workers.streams.tail import parse_start

EVENTS = """
exchanges: {orders: {type: topic}}
queues:
  order-events:
    type: stream
    bind: [{exchange: orders, routing_key: "order.#"}]
    stream: {max_age: 7d, max_length_bytes: 10GB, segment_bytes: 100MB}
"""

SUPER = """
queues:
  customers:
    type: stream
    partitions: 3
    key: {field: customer_id}
    stream: {max_age: 2h}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(TopologyInvalid) as caught:
        loads(text)
    return [str(p) for p in caught.value.problems]


class TestSizesAndAges:
    @pytest.mark.parametrize(
        ("text", "count"),
        [("100MB", 10**8), ("10GB", 10**10), ("1GiB", 2**30), ("512", 512), (42, 42)],
    )
    def test_sizes_parse_in_decimal_and_binary_units(self, text: object, count: int) -> None:
        assert ByteSize.parse(text).bytes == count

    @pytest.mark.parametrize("text", ["10XB", "-1", "", "1.5GB", True])
    def test_a_bad_size_is_refused(self, text: object) -> None:
        with pytest.raises(ValueError, match=r"invalid size|must be positive"):
            ByteSize.parse(text)

    @pytest.mark.parametrize(
        ("duration", "age"), [("7d", "7D"), ("36h", "36h"), ("90m", "90m"), ("45s", "45s")]
    )
    def test_max_age_is_spelled_the_way_rabbitmq_reads_it(self, duration: str, age: str) -> None:
        assert max_age(Duration.parse(duration)) == age


class TestRetention:
    def test_retention_becomes_the_streams_arguments(self) -> None:
        queues = {q.name: q for q in expand(loads(EVENTS)).queues}
        assert queues["order-events"] == QueueDecl(
            name="order-events",
            type="stream",
            arguments={
                "x-max-age": "7D",
                "x-max-length-bytes": 10**10,
                "x-stream-max-segment-size-bytes": 10**8,
            },
        )

    def test_retention_on_a_quorum_queue_is_one_problem_naming_its_path(self) -> None:
        text = EVENTS.replace("type: stream", "type: quorum")
        assert problems_of(text) == [
            "queues.order-events.stream: only streams have retention; this queue is quorum "
            "(set type: stream, or remove it)"
        ]

    def test_a_bad_size_names_its_path(self) -> None:
        (problem,) = problems_of(EVENTS.replace("10GB", "10 gigs"))
        assert problem.startswith("queues.order-events.stream.max_length_bytes: invalid size")

    def test_an_age_in_milliseconds_is_refused(self) -> None:
        (problem,) = problems_of(EVENTS.replace("7d", "1500ms"))
        assert problem.startswith("queues.order-events.stream.max_age: 1500ms is not a whole")

    def test_retention_set_twice_through_arguments_is_refused(self) -> None:
        text = EVENTS.replace("stream: {", "arguments: {x-max-age: 1D}\n    stream: {")
        assert problems_of(text) == [
            "queues.order-events.arguments.x-max-age: set by the stream: block; remove it here"
        ]

    def test_a_changed_retention_needs_a_recreate_and_says_a_policy_keeps_the_log(self) -> None:
        desired = expand(loads(EVENTS))
        live = Resources(
            exchanges=desired.exchanges,
            queues=[QueueDecl(name="order-events", type="stream", arguments={"x-max-age": "1D"})],
            bindings=desired.bindings,
        )
        (change,) = plan(desired, live, None).pending
        assert not change.in_place
        assert "x-max-age: 1D → 7D" in change.differences
        assert change.differences[-1] == STREAM_RETENTION_NOTE


class TestSuperStreams:
    def test_a_super_stream_is_a_direct_exchange_and_n_bound_partitions(self) -> None:
        resources = expand(loads(SUPER))
        assert [(e.name, e.type, e.arguments) for e in resources.exchanges] == [
            ("customers", "direct", {"x-super-stream": True})
        ]
        assert [(q.name, q.type, q.arguments) for q in resources.queues] == [
            (f"customers-{i}", "stream", {"x-max-age": "2h"}) for i in range(3)
        ]
        assert [
            (b.source, b.destination, b.routing_key, b.arguments) for b in resources.bindings
        ] == [
            ("customers", f"customers-{i}", str(i), {"x-stream-partition-order": i})
            for i in range(3)
        ]

    def test_the_partition_key_is_kept_for_publishers(self) -> None:
        queue = loads(SUPER).queues["customers"]
        assert queue.key is not None
        assert queue.key.field == "customer_id"
        assert loads(SUPER.replace("field: customer_id", "header: x-customer")).queues[
            "customers"
        ].key == type(queue.key)(header="x-customer")

    def test_a_super_stream_without_a_key_is_refused(self) -> None:
        (problem,) = problems_of(SUPER.replace("    key: {field: customer_id}\n", ""))
        assert problem.startswith("queues.customers.key: a super stream needs the key")

    def test_a_key_naming_both_a_field_and_a_header_is_refused(self) -> None:
        assert problems_of(SUPER.replace("field: customer_id", "field: a, header: b")) == [
            "queues.customers.key: name exactly one of field (a field of the event) "
            "or header (a message header)"
        ]

    def test_partitions_on_a_classic_queue_are_refused(self) -> None:
        problems = problems_of(SUPER.replace("type: stream", "type: classic"))
        assert (
            "queues.customers.partitions: only streams have partitions; this queue is "
            "classic (set type: stream, or remove it)" in problems
        )

    def test_a_super_stream_with_bindings_is_refused(self) -> None:
        text = "exchanges: {orders: {}}\n" + SUPER.replace(
            "partitions: 3", "partitions: 3\n    bind: [{exchange: orders}]"
        )
        (problem,) = problems_of(text)
        assert problem.startswith("queues.customers.bind: a super stream is published to")

    def test_a_super_stream_named_like_an_exchange_is_refused(self) -> None:
        (problem,) = problems_of("exchanges: {customers: {}}\n" + SUPER)
        assert problem.startswith("queues.customers: the super stream's own exchange")


class TestTailStart:
    """Where `fleet stream tail --from` starts."""

    @pytest.mark.parametrize(
        ("text", "kind", "offset"),
        [
            ("first", OffsetType.FIRST, None),
            ("last", OffsetType.LAST, None),
            ("next", OffsetType.NEXT, None),
            ("1500", OffsetType.OFFSET, 1500),
            ("2h", OffsetType.TIMESTAMP, 10_000_000 - 7_200_000),
        ],
    )
    def test_each_start(self, text: str, kind: OffsetType, offset: int | None) -> None:
        spec = parse_start(text, now_ms=10_000_000)
        assert (spec.offset_type, spec.offset) == (kind, offset)

    def test_a_bad_start_says_what_is_valid(self) -> None:
        with pytest.raises(ValueError, match=r"invalid start 'yesterday': write first, last"):
            parse_start("yesterday")
