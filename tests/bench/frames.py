"""Publishing without a Python client's per-message cost, for the bench's own publishers.

A Python client spends ~100 µs per persistent publish here (aiormq builds and
marshals frames per message): more than the broker needs to take it, and on a
2-core machine CPU taken from the contender being measured. The pre-fill and
the paced publisher therefore marshal one message with pamqp and write copies
straight to an aiormq connection's frame queue, splicing in each message id
(all ids have the same width) and, for the latency scenario, the send time
(an int64 header). The bytes are exactly what `payload.properties` describes.

Use a channel without publisher confirms: the broker's delivery tags would
not match the channel's own count.
"""

from __future__ import annotations

import asyncio
import struct

from aiormq.abc import AbstractConnection, ChannelFrame
from pamqp import body, commands, frame, header

from tests.bench.payload import BODY, properties

_SENT_PLACEHOLDER = 0x0123456789ABCDEF  # an int64 that marshals to 8 recognisable bytes


def message_id(tag: str, index: int) -> str:
    """The id of a bench message: fixed width, so frames can be spliced."""
    return f"{tag}-{index:09d}"


class Template:
    """The marshalled frames of one OrderPlaced publish to `queue` on `channel_number`.

    Args:
        channel_number: the channel the frames are written on.
        queue: routed through the default exchange.
        tag: the message id prefix (`message_id`).
        stamped: whether messages carry the `x-bench-sent-ns` header.
    """

    def __init__(self, channel_number: int, queue: str, tag: str, *, stamped: bool = False):
        self._tag = tag
        self._id = message_id(tag, 0).encode()
        self._sent = struct.pack(">q", _SENT_PLACEHOLDER)
        sent_ns = _SENT_PLACEHOLDER if stamped else None
        parts = (
            commands.Basic.Publish(exchange="", routing_key=queue),
            header.ContentHeader(0, len(BODY), properties(self._id.decode(), sent_ns=sent_ns)),
            body.ContentBody(BODY),
        )
        self._bytes = b"".join(frame.marshal(part, channel_number) for part in parts)

    def message(self, index: int, sent_ns: int | None = None) -> bytes:
        """Message `index` (id ``<tag>-<index>``), stamped with `sent_ns` if given."""
        data = self._bytes.replace(self._id, message_id(self._tag, index).encode())
        if sent_ns is not None:
            data = data.replace(self._sent, struct.pack(">q", sent_ns), 1)
        return data


async def write(connection: AbstractConnection, payload: bytes) -> None:
    """Write marshalled frames on `connection` and wait until the socket took them."""
    drained = asyncio.get_running_loop().create_future()
    await connection.write_queue.put(
        ChannelFrame(payload=payload, should_close=False, drain_future=drained)
    )
    await drained
