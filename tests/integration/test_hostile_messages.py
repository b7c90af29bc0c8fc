"""Hostile messages from any client: whatever the body, headers or properties, each
delivery ends processed or parked with its reason, and the worker keeps going.

Every case here once left a delivery unsettled, misread it, or broke the
connection on every redelivery.
"""

from __future__ import annotations

import datetime
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher
from tests.integration.raw_amqp import RawPublisher, long_string, short_string, table
from workers.runtime import headers as h
from workers.testing import Received, WorkerProcess, collect, queue_depth

#: A little over 6 KB: a thousand objects inside each other, in a field the contract lacks.
DEEP = b'{"probe_id": "deep", "extra": ' + b'{"a":' * 1_000 + b"1" + b"}" * 1_000 + b"}"


def probe_worker(broker: Broker, path: Path) -> WorkerProcess:
    return WorkerProcess("probe", topology_file=path, url=broker.amqp_url, pythonpath=[ROOT])


def publish_probe(
    publisher: PikaPublisher,
    probe_id: str,
    *,
    body: bytes | dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
    **properties: Any,
) -> None:
    publisher.publish(
        "probes",
        "probe.sent",
        body if body is not None else {"probe_id": probe_id},
        type=properties.pop("type", "Probe"),
        message_id=probe_id,
        headers=headers if headers is not None else {},
        **properties,
    )


def stopped_cleanly(process: WorkerProcess) -> bool:
    """After `stop()`: the worker drained with nothing left in flight."""
    [stopped] = process.events("worker.stopped")
    return bool(stopped["drained"]) and stopped["requeued"] == 0


async def outcomes(broker: Broker, processed: int, parked: int) -> tuple[list[Received], ...]:
    seen = await collect(broker.amqp_url, "seen", processed)
    dead = await collect(broker.amqp_url, "probes.dead", parked)
    return seen, dead


class TestDeeplyNestedBodies:
    async def test_a_small_deeply_nested_body_is_parked_as_a_decode_error_not_left_in_flight(
        self, broker: Broker, probe_topology, pika_publisher: PikaPublisher
    ) -> None:
        """About 6 KB of 1,000 nested objects: parked with its reason, and the next message runs."""
        # Given
        path = await probe_topology()
        with probe_worker(broker, path) as process:
            # When
            publish_probe(pika_publisher, "deep", body=DEEP)
            publish_probe(pika_publisher, "after")
            seen, [parked] = await outcomes(broker, processed=1, parked=1)
            process.stop()
        # Then
        assert [m.json()["probe_id"] for m in seen] == ["after"]
        assert parked.message_id == "deep"
        assert parked.headers[h.REASON] == "decode"
        assert parked.headers[h.ERROR_MESSAGE] == "Probe: JSON nested too deeply"
        assert parked.body == DEEP
        assert stopped_cleanly(process)
        assert await queue_depth(broker.amqp_url, "probes") == 0


class TestVersionHeader:
    @pytest.mark.parametrize(
        ("version", "shown"),
        [
            ("abc", "'abc'"),
            (True, "True"),
            ([1], "[1]"),
            (0, "0"),
            (-3, "-3"),
            (Decimal("1.5"), "Decimal('1.5')"),
        ],
    )
    async def test_a_version_that_is_not_a_positive_integer_is_parked_with_its_own_reason(
        self,
        broker: Broker,
        probe_topology,
        pika_publisher: PikaPublisher,
        version: object,
        shown: str,
    ) -> None:
        """`"abc"`, `true`, `[1]`, 0, -3 and 1.5 are no versions: never read as version 1."""
        # Given
        path = await probe_topology()
        with probe_worker(broker, path):
            # When
            publish_probe(pika_publisher, "odd", headers={h.VERSION: version})
            [parked] = await collect(broker.amqp_url, "probes.dead", 1)
        # Then
        assert parked.headers[h.REASON] == "invalid-version"
        assert parked.headers[h.ERROR_TYPE] == "InvalidVersion"
        assert parked.headers[h.ERROR_MESSAGE] == (
            f"the version header must be a positive integer, got {shown}"
        )

    async def test_a_version_written_as_digits_is_that_version(
        self, broker: Broker, probe_topology, pika_publisher: PikaPublisher
    ) -> None:
        """Clients whose headers are all text send "1": it is version 1, and "2" is version 2."""
        # Given
        path = await probe_topology()
        with probe_worker(broker, path):
            # When
            publish_probe(pika_publisher, "text-one", headers={h.VERSION: "1"})
            publish_probe(pika_publisher, "text-two", headers={h.VERSION: "2"})
            [seen], [parked] = await outcomes(broker, processed=1, parked=1)
        # Then
        assert seen.json()["probe_id"] == "text-one"
        assert parked.message_id == "text-two"
        # Probe has only version 1 and no upcaster: a version 2 is one it cannot reach.
        assert parked.headers[h.REASON] == "version-unsupported"
        assert "from v2" in parked.headers[h.ERROR_MESSAGE]


class TestFleetHeadersOfTheWrongType:
    async def test_fleet_headers_of_the_wrong_type_count_as_absent(
        self, broker: Broker, probe_topology, pika_publisher: PikaPublisher
    ) -> None:
        """Text or lists in fleet's counters and ids neither crash nor steer the worker."""
        # Given: every header fleet reads, each of a type it does not expect
        hostile = {
            h.ATTEMPTS: "abc",
            h.RETRIES: [1, 2],
            h.DELIVERIES: {"x": 1},
            h.CAUSATION_ID: 42,
            h.TIMESTAMP_MS: "yesterday",
            h.TRACEPARENT: 7,
        }
        path = await probe_topology()
        with probe_worker(broker, path) as process:
            # When
            publish_probe(pika_publisher, "ok", headers=hostile)
            publish_probe(pika_publisher, "failing", body={"action": "fail"}, headers=hostile)
            [seen], [parked] = await outcomes(broker, processed=1, parked=1)
            process.stop()
        # Then: processed; the failing one retried once through the delay tier, then parked
        assert seen.json()["probe_id"] == "ok"
        assert seen.headers[h.CAUSATION_ID] == "ok"
        assert parked.headers[h.REASON] == "retries-exhausted"
        assert parked.headers[h.RETRIES] == 1
        assert parked.headers[h.ATTEMPTS] == 4
        assert stopped_cleanly(process)


class TestUndecodableProperties:
    @pytest.mark.parametrize(
        ("properties", "problem"),
        [
            ({"timestamp": struct.pack(">Q", 2**63 - 1)}, "property timestamp"),
            ({"message_id": short_string(b"id-\xff\xfe")}, "property message_id is not UTF-8"),
            ({"message_type": short_string(b"Pro\xc3be")}, "property message_type is not UTF-8"),
            (
                {"headers": table([(b"when", b"T", struct.pack(">Q", 2**63 - 1))])},
                "property headers",
            ),
        ],
        ids=["timestamp", "message-id", "type", "header-timestamp"],
    )
    async def test_a_property_no_decoder_can_read_parks_the_message_and_keeps_the_connection(
        self,
        broker: Broker,
        probe_topology,
        properties: dict[str, bytes],
        problem: str,
    ) -> None:
        """Frames only a hand-written client sends: parked with the reason, the connection stays."""
        # Given
        path = await probe_topology()
        with probe_worker(broker, path) as process, RawPublisher(broker.amqp_url) as raw:
            # When
            raw.publish("probes", "probe.sent", b'{"probe_id": "hostile"}', properties)
            raw.publish(
                "probes",
                "probe.sent",
                b'{"probe_id": "after"}',
                {"message_type": short_string(b"Probe"), "message_id": short_string(b"after")},
            )
            seen, [parked] = await outcomes(broker, processed=1, parked=1)
            process.stop()
        # Then
        assert [m.json()["probe_id"] for m in seen] == ["after"]
        assert parked.headers[h.REASON] == "undecodable-properties"
        assert problem in parked.headers[h.ERROR_MESSAGE]
        assert parked.body == b'{"probe_id": "hostile"}'
        assert not process.events("broker.connection_lost")
        assert stopped_cleanly(process)

    async def test_a_header_of_text_that_is_not_utf8_arrives_as_bytes_and_is_processed(
        self, broker: Broker, probe_topology
    ) -> None:
        """A long string header is bytes to AMQP: a tolerant reader takes it as it is."""
        # Given
        path = await probe_topology()
        with probe_worker(broker, path), RawPublisher(broker.amqp_url) as raw:
            # When
            raw.publish(
                "probes",
                "probe.sent",
                b'{"probe_id": "bytes"}',
                {
                    "headers": table([(b"note", b"S", long_string(b"\xff\xfe"))]),
                    "message_type": short_string(b"Probe"),
                },
            )
            [seen] = await collect(broker.amqp_url, "seen", 1)
        # Then
        assert seen.json()["probe_id"] == "bytes"


class TestInternalErrors:
    async def test_an_error_outside_the_handler_is_parked_as_internal_and_logged_as_an_error(
        self, broker: Broker, probe_topology, pika_publisher: PikaPublisher
    ) -> None:
        """The contract's own check raising RuntimeError: parked as `internal` with the type."""
        # Given
        path = await probe_topology()
        with probe_worker(broker, path) as process:
            # When
            publish_probe(pika_publisher, "explode", body={"action": "explode"})
            publish_probe(pika_publisher, "after")
            [seen], [parked] = await outcomes(broker, processed=1, parked=1)
            process.stop()
        # Then
        assert seen.json()["probe_id"] == "after"
        assert parked.headers[h.REASON] == "internal"
        assert parked.headers[h.ERROR_TYPE] == "RuntimeError"
        assert "blew up" in parked.headers[h.ERROR_MESSAGE]
        [logged] = process.events("message.internal_error")
        assert logged["level"] == "error"
        assert logged["message_id"] == "explode"
        assert stopped_cleanly(process)


def test_timestamps_past_datetimes_range_really_are_unrepresentable() -> None:
    """The hostile timestamp above is one no datetime holds (so the case is real)."""
    with pytest.raises((ValueError, OverflowError, OSError)):
        datetime.datetime.fromtimestamp((2**63 - 1) / 1000.0, tz=datetime.UTC)
