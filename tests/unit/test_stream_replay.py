"""`fleet stream replay`'s pure parts: reading --since/--until, turning a stream message
back into the 0.9.1 properties it was published with, and the closing line.

The messages are AMQP 1.0 encoded and decoded by rstream, as the stream protocol
delivers them; the integration tests check RabbitMQ's own conversion of 0.9.1 messages.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from rstream import AMQPMessage, Header, Properties, amqp_decoder

from contracts import derive_message_id
from workers.cli.stream import _summary
from workers.streams import replay as replay_module
from workers.streams.replay import Replayed, ReplayFailed, Span, _Reader, parse_time, republished

NOW = int(datetime(2026, 5, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)


def delivered(**fields: Any) -> AMQPMessage:
    """The message as a stream subscriber decodes it (keys and text come back as bytes)."""
    return amqp_decoder(bytes(AMQPMessage(**fields)))


class TestParseTime:
    @pytest.mark.parametrize(
        ("text", "ms"),
        [
            ("2h", NOW - 7_200_000),
            ("30m", NOW - 1_800_000),
            ("1d", NOW - 86_400_000),
            ("2026-05-01T11:00:00Z", NOW - 3_600_000),
            ("2026-05-01T11:00:00", NOW - 3_600_000),  # no offset: UTC
            ("2026-05-01T13:00:00+02:00", NOW - 3_600_000),
            ("2026-05-01 11:59:59.500", NOW - 500),
        ],
    )
    def test_an_iso_time_or_how_far_back(self, text: str, ms: int) -> None:
        assert parse_time(text, now_ms=NOW) == ms

    @pytest.mark.parametrize("text", ["yesterday", "-2h", "2 hours", ""])
    def test_anything_else_says_what_to_write(self, text: str) -> None:
        with pytest.raises(ValueError, match=r"write an ISO time .* or how far back"):
            parse_time(text, now_ms=NOW)


class TestRepublished:
    def test_a_091_message_gets_its_properties_back(self) -> None:
        """The form RabbitMQ 3.10 stores a 0.9.1 publish in."""
        message = delivered(
            body=b'{"order_id": "o-1"}',
            properties=Properties(
                message_id=b"m-1",
                correlation_id=b"saga-1",
                content_type=b"application/json",
                content_encoding=b"utf-8",
                reply_to=b"answers",
                user_id=b"someone-else",
                creation_time=NOW,
            ),
            application_properties={
                b"x-basic-type": b"OrderPlaced",
                b"x-basic-app-id": b"shop",
                b"version": 2,
                b"causation-id": b"m-0",
                b"x-custom": b"kept",
            },
            message_annotations={
                b"x-exchange": b"orders",
                b"x-routing-key": b"order.placed",
                b"x-basic-delivery-mode": 2,
                b"x-basic-priority": 3,
                b"x-basic-expiration": b"60000",
            },
        )
        event_type, p = republished(message)
        assert event_type == "OrderPlaced"
        assert (p.message_id, p.correlation_id, p.message_type, p.app_id) == (
            "m-1",
            "saga-1",
            "OrderPlaced",
            "shop",
        )
        assert (p.content_type, p.content_encoding, p.reply_to) == (
            "application/json",
            "utf-8",
            "answers",
        )
        assert (p.delivery_mode, p.priority) == (2, 3)
        assert p.timestamp == datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
        assert p.headers == {"version": 2, "causation-id": "m-0", "x-custom": "kept"}
        # Not kept: the event would expire, and the broker refuses another user's id.
        assert p.expiration is None
        assert p.user_id is None

    def test_an_event_without_id_gets_the_one_the_worker_derived(self) -> None:
        body = b'{"order_id": "o-2"}'
        typed = delivered(body=body, application_properties={b"x-basic-type": b"OrderPlaced"})
        keyed = delivered(body=body, message_annotations={b"x-routing-key": b"order.placed"})
        assert republished(typed)[1].message_id == derive_message_id("OrderPlaced", body)
        # No type: the worker routed it by key, and derived its id from the key.
        assert republished(keyed)[1].message_id == derive_message_id("order.placed", body)

    def test_an_amqp_10_publisher_may_say_type_itself(self) -> None:
        message = delivered(
            body=b"{}",
            header=Header(durable=False, priority=7),
            application_properties={b"type": b"OrderPlaced", b"version": 1},
        )
        event_type, p = republished(message)
        assert (event_type, p.message_type, p.headers) == (
            "OrderPlaced",
            "OrderPlaced",
            {"version": 1},
        )
        assert (p.delivery_mode, p.priority) == (1, 7)

    def test_a_header_named_type_stays_a_header_when_the_type_is_known(self) -> None:
        message = delivered(
            body=b"{}",
            application_properties={b"x-basic-type": b"OrderPlaced", b"type": b"express"},
        )
        event_type, p = republished(message)
        assert (event_type, p.headers) == ("OrderPlaced", {"type": "express"})

    def test_without_header_a_message_is_persistent(self) -> None:
        _, p = republished(delivered(body=b"{}"))
        assert p.delivery_mode == 2
        assert p.headers == {}


class TestSummary:
    def test_the_closing_line(self) -> None:
        done = Replayed(types=Counter(OrderPlaced=1234), skipped=56, seconds=2.06, streams=["s"])
        assert (
            _summary(done, "order-events", "orders", dry_run=False, filtered=True)
            == "replayed 1,234 events into orders (skipped 56 of other types) in 2.1 s"
        )

    def test_one_event_a_dry_run_and_a_super_stream(self) -> None:
        done = Replayed(types=Counter(A=1), seconds=0.3, streams=["c-0", "c-1", "c-2"])
        assert (
            _summary(done, "c", "audit", dry_run=True, filtered=False)
            == "would replay 1 event from 3 partitions of c into audit (read in 0.3 s)"
        )


class TestStall:
    async def test_a_stream_that_stops_delivering_short_of_its_end_is_an_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Never a hang: the span's end never comes, nothing more is read."""
        monkeypatch.setattr(replay_module, "STALL_TIMEOUT", 0.05)
        reader = _Reader(Replayed(), None, None, total=10, progress=None)
        with pytest.raises(ReplayFailed, match=r"delivered nothing for .* short of its end"):
            await reader._until_done(asyncio.Event(), Span("events", 0, 9))

    async def test_a_slow_stream_that_keeps_delivering_is_waited_for(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(replay_module, "STALL_TIMEOUT", 0.05)
        reader = _Reader(Replayed(), None, None, total=10, progress=None)
        done = asyncio.Event()

        async def trickle() -> None:
            for read in range(1, 11):
                await asyncio.sleep(0.03)  # each event within the stall timeout
                reader._read = read
            done.set()

        task = asyncio.create_task(trickle())
        await reader._until_done(done, Span("events", 0, 9))
        await task
        assert reader._read == 10
