"""Replaying a stream's events into a queue: a time window of the log, optionally one
event type, published again through the default exchange with confirms.

    since ──▶ the first offset at or after it (per partition of a super stream)
    until ──▶ the last chunk at or before it; by default the end the stream had
              when the replay started, so a replay always terminates
    each event ──▶ its own message id, correlation id, type, headers and body
                   ──▶ QUEUE (mandatory: a queue gone meanwhile is an error)

The subscriptions have no reference name, so no consumer's stored offset moves. A
super stream's partitions are replayed one after another, in partition order:
each partition's order is kept (so each key's), not the order across them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aio_pika.abc import AbstractConnection
from pamqp.commands import Basic
from rstream import AMQPMessage, ConsumerOffsetSpecification, MessageContext, amqp_decoder
from rstream.constants import OffsetType

from contracts import derive_message_id
from topology import BrokerUnreachable
from topology.duration import Duration
from topology.management import Management
from workers.errors import PublishFailed, WorkerError
from workers.runtime.bucket import TokenBucket
from workers.runtime.connection import connect, first_missing_queue
from workers.runtime.publisher import Publisher
from workers.streams.connect import StreamEndpoint, StreamUnavailable
from workers.streams.offsets import last_chunk
from workers.streams.tail import _body

#: Publishes awaiting their confirms at once: enough to keep a broker that confirms
#: in batches busy (256 replayed about a fifth slower).
WINDOW = 1024
#: Seconds between two progress reports.
PROGRESS_EVERY = 0.1
#: How long the broker may take to deliver a window's first chunk.
LOCATE_TIMEOUT = 30.0
#: Seconds without a delivered event before a replay short of its end gives up
#: (the stream truncated or deleted under it, a lost connection): never a hang.
STALL_TIMEOUT = 30.0

#: Where RabbitMQ keeps a 0.9.1 message's properties that AMQP 1.0 has no field for.
_TYPE = "x-basic-type"
_APP_ID = "x-basic-app-id"
_DELIVERY_MODE = "x-basic-delivery-mode"
_PRIORITY = "x-basic-priority"
_ROUTING_KEY = "x-routing-key"
#: Annotations that say how the message arrived, not what it is: never headers.
_ARRIVAL = frozenset({"x-exchange", _ROUTING_KEY})
_PERSISTENT = 2


class ReplayFailed(WorkerError):
    """The target queue does not exist, or the broker returned or nacked a replayed event."""


def parse_time(text: str, now_ms: int | None = None) -> int:
    """An ISO 8601 time (UTC unless it says otherwise) or how far back from now
    (``30m``, ``2h``, ``1d``, as `fleet stream tail --from` takes it) → ms since the epoch.

    Raises:
        ValueError: neither.
    """
    try:
        back = Duration.parse(text)
    except ValueError:
        pass
    else:
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return now - back.ms
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: write an ISO time (2026-05-01T12:00:00Z) "
            "or how far back (30m, 2h, 1d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@dataclass(frozen=True)
class Span:
    """What to read of one stream: offsets `first` to `last`, both included."""

    stream: str
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass
class Replayed:
    """What a replay did (or, dry, would do)."""

    #: Events published (dry: that would be), by type ("" for none).
    types: Counter[str] = field(default_factory=Counter)
    #: Events in the window of another type than --type.
    skipped: int = 0
    seconds: float = 0.0
    #: The streams read: the stream, or a super stream's partitions.
    streams: list[str] = field(default_factory=list)

    @property
    def replayed(self) -> int:
        return sum(self.types.values())


#: Called with (offsets read, offsets to read) now and then, and once at the end.
Progress = Callable[[int, int], None]


async def replay(
    endpoint: StreamEndpoint,
    amqp_url: str,
    stream: str,
    queue: str,
    *,
    since_ms: int,
    until_ms: int | None = None,
    event_type: str | None = None,
    rate: float | None = None,
    dry_run: bool = False,
    management_url: str | None = None,
    progress: Progress | None = None,
) -> Replayed:
    """Publish the events of `stream` written from `since_ms` to `until_ms` (default:
    up to its end as it is now) into `queue`, only those of `event_type` if given, at
    most `rate` a second; with `dry_run`, count them and publish nothing.

    Raises:
        StreamUnavailable: the stream protocol is unreachable, or `stream` is neither a
            stream nor a super stream.
        ReplayFailed: `queue` does not exist, or a publish was returned or nacked.
        BrokerUnreachable: AMQP is unreachable.
    """
    if until_ms is not None and until_ms < since_ms:
        raise ValueError("--until is before --since")
    started = time.perf_counter()
    result = Replayed(streams=await _streams(endpoint, amqp_url, stream, management_url))
    connection = await connect(amqp_url, name="fleet stream replay")
    sink: _Sink | None = None
    reader: _Reader | None = None
    try:
        if await first_missing_queue(connection, [queue]) is not None:
            raise ReplayFailed(f"no queue {queue!r} in vhost {endpoint.vhost!r} to replay into")
        spans = await _spans(endpoint, result.streams, since_ms, until_ms)
        sink = None if dry_run else await _Sink.open(connection, queue, rate)
        reader = _Reader(result, event_type, sink, sum(s.size for s in spans), progress)
        for span in spans:
            await reader.read(endpoint, span, since_ms, until_ms)
        if sink is not None:
            await sink.settle()
        reader.report(done=True)
    finally:
        if sink is not None:
            sink.abandon()
        if reader is not None:
            await reader.close()
        await connection.close()
    result.seconds = time.perf_counter() - started
    return result


async def _streams(
    endpoint: StreamEndpoint, amqp_url: str, name: str, management_url: str | None
) -> list[str]:
    """`name` if it is a stream, else a super stream's partitions in partition order
    (RabbitMQ 3.10's stream protocol cannot list them, so the management API does)."""
    consumer = endpoint.consumer()
    await endpoint.start(consumer)
    try:
        if await consumer.stream_exists(name):
            return [name]
    finally:
        await consumer.close()
    missing = f"no stream or super stream {name!r} in vhost {endpoint.vhost!r}"
    try:
        with Management.for_broker(amqp_url, management_url) as management:
            partitions = await asyncio.to_thread(_partitions, management, name)
    except BrokerUnreachable as exc:
        raise StreamUnavailable(
            f"no stream {name!r} in vhost {endpoint.vhost!r}, and whether it is a super "
            f"stream cannot be checked: {exc}"
        ) from None
    if not partitions:
        raise StreamUnavailable(missing)
    return partitions


def _partitions(management: Management, name: str) -> list[str]:
    """The streams bound to super stream exchange `name`, by x-stream-partition-order."""
    exchange = next((e for e in management.exchanges() if e.name == name), None)
    if exchange is None or exchange.arguments.get("x-super-stream") is not True:
        return []
    bound = [b for b in management.bindings() if b.source == name and b.destination_type == "queue"]
    bound.sort(key=lambda b: (b.arguments.get("x-stream-partition-order", 0), b.routing_key))
    return [b.destination for b in bound]


async def _spans(
    endpoint: StreamEndpoint, streams: list[str], since_ms: int, until_ms: int | None
) -> list[Span]:
    """Each stream's offsets in the window, its end fixed now; streams with none are left out."""

    async def span(stream: str) -> Span | None:
        # Both at once: closing an rstream connection takes a fixed 0.2 s.
        first = asyncio.ensure_future(_first_at(endpoint, stream, since_ms))
        try:
            last = await last_chunk(endpoint, stream)
            if last is None or last.timestamp < since_ms:
                return None  # empty, or nothing written since: no first offset will come
            return Span(stream, await first, last.offset)
        finally:
            if not first.done():
                first.cancel()
                await asyncio.gather(first, return_exceptions=True)

    found = await asyncio.gather(*(span(s) for s in streams))
    return [s for s in found if s is not None]


async def _first_at(endpoint: StreamEndpoint, stream: str, since_ms: int) -> int:
    """The offset of the first message whose chunk was written at or after `since_ms`
    (it waits for one; the caller cancels it when the stream has none)."""
    found: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_message(_: AMQPMessage, context: MessageContext) -> None:
        if context.timestamp >= since_ms and not found.done():
            found.set_result(context.offset)

    consumer = endpoint.consumer()
    await endpoint.start(consumer)
    try:
        await consumer.subscribe(
            stream,
            on_message,
            offset_specification=ConsumerOffsetSpecification(OffsetType.TIMESTAMP, since_ms),
        )
        try:
            return await asyncio.wait_for(found, LOCATE_TIMEOUT)
        except TimeoutError:
            raise StreamUnavailable(
                f"stream {stream!r} delivered nothing from {since_ms} ms within "
                f"{LOCATE_TIMEOUT:g} s"
            ) from None
    finally:
        await consumer.close()


class _Sink:
    """Publishes into one queue through the default exchange, `WINDOW` confirms in
    flight, paced by a token bucket when a rate is given."""

    def __init__(self, publisher: Publisher, queue: str, rate: float | None):
        self._publisher = publisher
        self._queue = queue
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        self._bucket = None if rate is None else TokenBucket(rate, now=self._clock())
        # A semaphore and a done callback: asyncio.wait over the window, once per
        # publish, cost more than the publish itself.
        self._room = asyncio.Semaphore(WINDOW)
        self._pending: set[asyncio.Future[None]] = set()
        self._failure: BaseException | None = None

    @classmethod
    async def open(cls, connection: AbstractConnection, queue: str, rate: float | None) -> _Sink:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        return cls(Publisher(await channel.get_underlay_channel()), queue, rate)

    async def send(self, body: bytes, properties: Basic.Properties) -> None:
        """Publish (in order: tasks start in the order they are made); waits for a
        token, and for room in the window.

        Raises:
            ReplayFailed: an earlier publish was returned or nacked.
        """
        if self._bucket is not None:
            wait = self._bucket.take(self._clock())
            if wait:
                await asyncio.sleep(wait)
        await self._room.acquire()
        self._raise_failure()
        publish = asyncio.ensure_future(
            self._publisher.publish(
                body, exchange="", routing_key=self._queue, properties=properties
            )
        )
        self._pending.add(publish)
        publish.add_done_callback(self._confirmed)

    async def settle(self) -> None:
        """Wait for every confirm.

        Raises:
            ReplayFailed: a publish was returned or nacked.
        """
        if self._pending:
            await asyncio.wait(set(self._pending))
        self._raise_failure()

    def abandon(self) -> None:
        """Stop waiting for confirms still due (the replay failed, or was interrupted)."""
        for publish in list(self._pending):
            publish.cancel()

    def _confirmed(self, publish: asyncio.Future[None]) -> None:
        self._pending.discard(publish)
        self._room.release()
        if publish.cancelled():
            return
        failure = publish.exception()
        if failure is not None and self._failure is None:
            self._failure = failure

    def _raise_failure(self) -> None:
        """A failed publish ends the replay: the events after it are not sent."""
        failure = self._failure
        if isinstance(failure, PublishFailed):
            raise ReplayFailed(
                f"the broker did not take a replayed event for queue {self._queue!r} "
                f"({failure}): was the queue deleted?"
            )
        if failure is not None:
            raise failure


class _Reader:
    """Reads spans one after another, filters, counts and hands events to the sink."""

    def __init__(
        self,
        result: Replayed,
        event_type: str | None,
        sink: _Sink | None,
        total: int,
        progress: Progress | None,
    ):
        self._result = result
        self._event_type = event_type
        self._sink = sink
        self._total = total
        self._progress = progress
        self._read = 0  # offsets read, of every span so far
        self._reported = 0.0
        self._closing: list[asyncio.Future[None]] = []
        self.report()

    async def read(
        self, endpoint: StreamEndpoint, span: Span, since_ms: int, until_ms: int | None
    ) -> None:
        """Every event of `span` (until a chunk written after `until_ms`)."""
        done = asyncio.Event()
        failure: list[BaseException] = []
        read_before = self._read

        async def on_message(message: AMQPMessage, context: MessageContext) -> None:
            # rstream logs and drops a callback's exception: it is kept for the caller.
            if done.is_set():
                return
            try:
                if until_ms is not None and context.timestamp > until_ms:
                    done.set()
                    return
                self._read = read_before + context.offset - span.first + 1
                if context.timestamp >= since_ms:
                    await self._take(message)
                if context.offset >= span.last:
                    done.set()
                self.report()
            except Exception as exc:
                failure.append(exc)
                done.set()

        consumer = endpoint.consumer()
        await endpoint.start(consumer)
        try:
            # No subscriber_name: the broker stores no offset for this subscription.
            await consumer.subscribe(
                span.stream,
                on_message,
                decoder=amqp_decoder,
                offset_specification=ConsumerOffsetSpecification(OffsetType.OFFSET, span.first),
            )
            await self._until_done(done, span)
        finally:
            # Closed while the next span is read: an rstream close takes 0.2 s or more.
            self._closing.append(asyncio.ensure_future(consumer.close()))
        if failure:
            raise failure[0]
        self._read = read_before + span.size

    async def _until_done(self, done: asyncio.Event, span: Span) -> None:
        """Wait for the span's end; a stream that delivers nothing for STALL_TIMEOUT
        seconds short of it is an error naming where the replay stopped."""
        while True:
            seen = self._read
            try:
                await asyncio.wait_for(done.wait(), STALL_TIMEOUT)
                return
            except TimeoutError:
                if self._read == seen:
                    raise ReplayFailed(
                        f"stream '{span.stream}' delivered nothing for {STALL_TIMEOUT:.0f} s "
                        f"short of its end (read {self._read:,} of {self._total:,} events; "
                        f"stopped before offset {span.last:,}): was it truncated or deleted?"
                    ) from None

    async def close(self) -> None:
        """Wait for every subscription's connection to close."""
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def _take(self, message: AMQPMessage) -> None:
        event_type, properties = republished(message)
        if self._event_type is not None and event_type != self._event_type:
            self._result.skipped += 1
            return
        self._result.types[event_type] += 1
        if self._sink is not None:
            await self._sink.send(_body(message.body), properties)

    def report(self, *, done: bool = False) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if done or now - self._reported >= PROGRESS_EVERY:
            self._reported = now
            self._progress(self._total if done else self._read, self._total)


def republished(message: AMQPMessage) -> tuple[str, Basic.Properties]:
    """A stream message's event type and the 0.9.1 properties it was published with.

    RabbitMQ keeps a 0.9.1 message in AMQP 1.0 form: the ids, content type and
    encoding, reply-to and timestamp as properties; `type` and `app_id` as application
    properties x-basic-type and x-basic-app-id (3.10; message annotations on 4.x),
    delivery mode and priority as annotations; the headers as application properties
    (RabbitMQ 3.10 drops list and table headers). Not kept on replay: `expiration` (the
    event would expire instead of being handled) and `user_id` (the broker refuses one
    that is not the replaying user). An event published without a message id gets the
    one the worker derived for it (from its type, or original routing key, and body),
    so the inbox still recognises it.
    """
    application = _keyed(message.application_properties)
    annotations = _keyed(message.message_annotations)
    props = message.properties
    # An AMQP 1.0 or stream-protocol publisher may say `type` itself (as tail reads it).
    typed = _TYPE in application or _TYPE in annotations
    event_type = _text(application.get(_TYPE, annotations.get(_TYPE, application.get("type"))))
    headers = {
        k: _field(v)
        for k, v in [*annotations.items(), *application.items()]
        if not k.startswith("x-basic-") and k not in _ARRIVAL and (typed or k != "type")
    }
    message_id = _text(getattr(props, "message_id", None))
    if not message_id:
        key = event_type or _text(annotations.get(_ROUTING_KEY))
        message_id = derive_message_id(key, _body(message.body))
    header = message.header
    durable = getattr(header, "durable", None)
    mode = annotations.get(_DELIVERY_MODE, _PERSISTENT if durable in (None, True) else 1)
    priority = annotations.get(_PRIORITY, getattr(header, "priority", None))
    created = getattr(props, "creation_time", None)
    app_id = application.get(_APP_ID, annotations.get(_APP_ID))
    return event_type, Basic.Properties(
        content_type=_text(getattr(props, "content_type", None)) or None,
        content_encoding=_text(getattr(props, "content_encoding", None)) or None,
        headers=headers,
        delivery_mode=mode if isinstance(mode, int) else _PERSISTENT,
        priority=priority if isinstance(priority, int) and 0 <= priority <= 255 else None,
        correlation_id=_text(getattr(props, "correlation_id", None)) or None,
        reply_to=_text(getattr(props, "reply_to", None)) or None,
        message_id=message_id,
        timestamp=(
            datetime.fromtimestamp(created / 1000, UTC) if isinstance(created, int) else None
        ),
        message_type=event_type or None,
        app_id=_text(app_id) or None,
    )


def _keyed(values: dict[Any, Any] | None) -> dict[str, Any]:
    return {_text(k): v for k, v in (values or {}).items()}


def _field(value: Any) -> Any:
    """An AMQP 1.0 value as a 0.9.1 field-table value pamqp can write."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool | int | float | str | Decimal | datetime) or value is None:
        return value
    if isinstance(value, dict):
        return {_text(k): _field(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_field(v) for v in value]
    return str(value)


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
