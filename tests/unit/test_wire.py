"""fleet's own publish marshalling writes exactly the bytes pamqp writes for the
same publish, for every shape of fleet message and for any properties."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pamqp import commands, encode
from pamqp.body import ContentBody
from pamqp.frame import marshal
from pamqp.header import ContentHeader

from workers.runtime.fastpath.wire import field_table, publish_frames, publish_frames_for
from workers.runtime.outgoing import Outgoing

FRAME_MAX_BODY = 131_064  # RabbitMQ's default frame_max (131,072) minus the frame envelope


def outgoing(**changes: Any) -> Outgoing:
    fields: dict[str, Any] = {
        "exchange": "inventory",
        "routing_key": "stock.reserved",
        "body": b'{"order_id": "o-1", "lines": []}',
        "message_id": "4f1c" * 8,
        "correlation_id": "saga-1",
        "causation_id": "parent-1",
        "type": "StockReserved",
        "version": 1,
        "mandatory": True,
        "timestamp": datetime(2026, 11, 27, 5, 0, 1, 250_000, tzinfo=UTC),
        "app_id": "fleet.inventory",
        "trace": None,
    }
    fields.update(changes)
    return Outgoing(**fields)


def pamqp_publish(
    body: bytes,
    exchange: str,
    routing_key: str,
    properties: commands.Basic.Properties,
    mandatory: bool,
    channel: int,
    max_body: int,
) -> bytes:
    """The frames aiormq's basic_publish writes: pamqp marshals each one."""
    frames: list[Any] = [
        commands.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory),
        ContentHeader(0, len(body), properties),
    ]
    frames += [ContentBody(body[i : i + max_body]) for i in range(0, len(body), max_body)]
    return b"".join(marshal(frame, channel) for frame in frames)


def expected(message: Outgoing, channel: int = 1, max_body: int = FRAME_MAX_BODY) -> bytes:
    return pamqp_publish(
        message.body,
        message.exchange,
        message.routing_key,
        message.properties(),
        message.mandatory,
        channel,
        max_body,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"causation_id": None},
        {"app_id": None},
        {"mandatory": False},
        {"trace": {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}},
        {"trace": {"traceparent": "00-x-y-01", "tracestate": "vendor=1"}},
        {"version": 300},
        {"version": 70_000},
        {"exchange": "", "routing_key": "orders.dead"},
        {"correlation_id": "größe-ß-∑", "type": "Ünïcode"},
        {"body": b""},
        {"timestamp": datetime(1999, 1, 1, tzinfo=UTC)},
    ],
    ids=lambda changes: ",".join(changes) or "plain",
)
def test_fleet_messages_marshal_as_pamqp_does(changes: dict[str, Any]) -> None:
    message = outgoing(**changes)
    assert publish_frames(message, 1, FRAME_MAX_BODY) == expected(message)


def test_large_bodies_split_over_body_frames_on_any_channel() -> None:
    message = outgoing(body=bytes(range(256)) * 40)  # 10,240 bytes
    frames = publish_frames(message, 7, 4096)
    assert frames == expected(message, channel=7, max_body=4096)
    assert frames.count(b"\xce\x03\x00\x07") == 3  # three body frames follow one another


def test_any_properties_marshal_as_pamqp_does() -> None:
    properties = commands.Basic.Properties(
        content_type="application/json",
        delivery_mode=2,
        message_id="m-1",
        correlation_id="c-1",
        message_type="OrderPlaced",
        expiration="5000",
        priority=3,
        timestamp=datetime(2026, 11, 27, tzinfo=UTC),
        headers={
            "x-fleet-attempts": 3,
            "x-fleet-error": "boom",
            "x-fleet-first-failure": datetime(2026, 11, 27, tzinfo=UTC),
            "flag": True,
            "nested": {"a": 1},
        },
    )
    body = b"x" * 5000
    frames = publish_frames_for(
        body,
        exchange="",
        routing_key="orders.retry.5s",
        properties=properties,
        mandatory=True,
        channel=2,
        max_body_frame=4096,
    )
    assert frames == pamqp_publish(body, "", "orders.retry.5s", properties, True, 2, 4096)


@pytest.mark.parametrize(
    "value",
    [
        0,
        1,
        -1,
        127,
        128,
        -128,
        -129,
        32767,
        32768,
        -32768,
        -32769,
        65535,
        65536,
        2**31 - 1,
        2**31,
        -(2**31),
        -(2**31) - 1,
        2**32 - 1,
        2**32,
        2**63 - 1,
        -(2**63),
        1_764_219_601_250,
    ],
)
def test_integers_take_the_field_type_pamqp_picks(value: int) -> None:
    assert field_table({"n": value}) == encode.field_table({"n": value})


def test_tables_sort_their_keys_and_leave_other_types_to_pamqp() -> None:
    values: dict[str, Any] = {"zeta": "last", "alpha": 1, "mid": 2.5, "flag": False, "none": None}
    assert field_table(values) == encode.field_table(values)


def test_a_short_string_over_255_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="over 255 bytes"):
        publish_frames(outgoing(routing_key="k" * 256), 1, FRAME_MAX_BODY)
