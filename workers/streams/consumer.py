"""One stream message's path, in offset order, one at a time per stream:

    read it (`message.read_stream_delivery`; bytes no reader decodes: park them)
    ─▶ another reader's contract: pass it over
    ─▶ the handler stage (`runtime.handling`): decode, handle with in-process
    retries, publish follow-ons with confirms
    ─▶ done: note the offset; cannot be processed: park a copy in the worker's
    dead-letter queue (reason and stream offset in headers, with a confirm), note
    the offset and move on

A stream cannot be nacked or redelivered: nothing is left for the broker to hand
back, so a copy that cannot be parked stops the consumer (`ParkFailed`) rather
than skip the message; it resumes at that offset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import structlog
from rstream import MessageContext

from topology.names import dead_letter_queue, failure_exchange
from workers.errors import PublishFailed, WorkerError
from workers.runtime import headers as h
from workers.runtime.connection import CONNECTION_ERRORS
from workers.runtime.consumer import Outcome, Stage
from workers.runtime.deadletter import parked_copy
from workers.runtime.delivery import Delivery
from workers.runtime.hooks import Observers
from workers.runtime.publisher import Publisher
from workers.runtime.retry import Decision, Park, describe, truncate
from workers.streams.message import read_stream_delivery
from workers.streams.positions import OffsetClaims, Positions

log = structlog.get_logger("fleet.stream")

#: A parked copy's publish failing with one of these leaves the message unparked.
_UNSENDABLE: tuple[type[BaseException], ...] = (PublishFailed, *CONNECTION_ERRORS)


class ParkFailed(WorkerError):
    """A message that could not be processed could not be parked either."""


class StreamConsumer:
    """Feeds one worker's stream messages through its handler stage.

    Args:
        stage: the worker's handler stage.
        base: what the worker's dead-letter queue and failure exchange are named after.
        publisher: a confirm-mode publisher for the parked copies.
        observers: told of every step, as on a queue.
        positions: where processed offsets go.
        claims: the stage's inbox when offsets commit with the handler (database).
        on_lost: told of offsets retention removed before they were read (stream, count).
        resume: per stream, the offset after the last one done (kept across connections).
        pace: the rate limits' turn-taker, if the worker has any.
        on_done: told of each offset done (stream, offset).
    """

    def __init__(
        self,
        *,
        stage: Stage,
        base: str,
        publisher: Publisher,
        observers: Observers,
        positions: Positions,
        claims: OffsetClaims | None = None,
        on_lost: Callable[[str, int], None] | None = None,
        resume: dict[str, int] | None = None,
        pace: Callable[[Delivery], tuple[float, str | None]] | None = None,
        on_done: Callable[[str, int], None] | None = None,
    ):
        self.stage = stage
        self.base = base
        self._publisher = publisher
        self._observers = observers
        self._positions = positions
        self._claims = claims
        self._on_lost = on_lost
        #: Per stream: the last offset done, read again to prove nothing after it is gone.
        self.expected: dict[str, int | None] = {}
        #: Per stream: the offset after the last one done, across reconnects.
        self.resume: dict[str, int] = resume if resume is not None else {}
        self._pace = pace
        self._on_done = on_done
        self.stopping = False
        #: Messages of contracts the worker does not handle, passed over.
        self.skipped = 0
        #: Set when a message could not be settled: the consumer stops at it.
        self.failed = asyncio.Event()
        self.error: BaseException | None = None
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def on_message(self, message: bytes, context: MessageContext) -> None:
        """rstream's callback (subscribed without a decoder: the message's bytes),
        awaited per message, in offset order. It never raises (rstream would only
        log it): a failure sets `failed` and stops the reading."""
        if self.stopping:
            return
        stream, offset = context.stream, context.offset
        if stream in self.expected:
            self._check_gap(stream, offset)
        if offset < self.resume.get(stream, 0):
            return  # done already: the offset re-read to check, or the start of its chunk
        self._busy += 1
        self._idle.clear()
        try:
            await self._consume(message, stream, offset, context.timestamp)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # the offset stays undone: read again after a reconnect
            self.stopping = True
            self.error = error
            self.failed.set()
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def _consume(self, message: bytes, stream: str, offset: int, timestamp_ms: int) -> None:
        delivery = read_stream_delivery(
            message, stream=stream, offset=offset, timestamp_ms=timestamp_ms
        )
        if self._pace is not None:
            wait, _ = self._pace(delivery)
            if wait > 0.0:
                await asyncio.sleep(wait)
        reading = self._claims.reading(stream, offset) if self._claims is not None else None
        label = self.stage.label(delivery)
        committed = False
        if delivery.undecodable is not None:  # not even its properties: parked as it came
            self._observers.received(delivery, label)
            decision = Park("undecodable-properties", "UndecodableProperties", delivery.undecodable)
            self._observers.finished(delivery, decision)
            await self._park(delivery, label, (decision, 0), stream, offset)
        elif label is None and delivery.version is not None:
            # A stream carries every reader's events: one of a contract this worker
            # takes no version of is not for it (on a queue, it would be a wiring
            # mistake, and parked). Counted, not parked.
            self.skipped += 1
        elif (outcome := await self._outcome(delivery, label)) is None:
            self._observers.processed(delivery, label)
            committed = reading is not None and reading.committed
        else:
            await self._park(delivery, label, outcome, stream, offset)
        await self._positions.processed(stream, offset, committed=committed)
        self.resume[stream] = offset + 1
        if self._on_done is not None:
            self._on_done(stream, offset)

    def _check_gap(self, stream: str, offset: int) -> None:
        """Say so when the first offset read is past the one expected.

        A consumer resumes by reading its last offset done again: if the stream
        still holds it, nothing after it is gone. Offsets are not all messages
        (RabbitMQ writes offset tracking into the stream too), so a gap between
        two messages means nothing; a last offset that is gone means retention
        removed it and whatever followed it before the first offset still kept.
        """
        expected = self.expected.pop(stream)
        if expected is None or offset <= expected + 1:
            return
        lost = offset - expected - 1
        log.error(
            "stream.offsets_lost",
            worker=self.stage.name,
            stream=stream,
            lost=lost,
            last_done=expected,
            resumed_at=offset,
            why="the stream's retention removed them before this consumer read them",
        )
        if self._on_lost is not None:
            self._on_lost(stream, lost)

    async def _outcome(self, delivery: Delivery, label: str | None) -> Outcome:
        """The stage's outcome; an unexpected error is parked as `internal`."""
        self._observers.received(delivery, label)
        outcome: Outcome = None
        try:
            if delivery.version is None:
                shown = repr(delivery.headers.get(h.VERSION))[:60]
                reason = f"the version header must be a positive integer, got {shown}"
                outcome = Park("invalid-version", "InvalidVersion", reason), delivery.attempts
            else:
                outcome = await self.stage.process(delivery, label)
        except CONNECTION_ERRORS:
            raise
        except Exception as error:
            outcome = Park("internal", type(error).__name__, truncate(describe(error))), 0
            log.error("message.internal_error", worker=self.stage.name, exc_info=error)
        finally:
            self._observers.finished(delivery, outcome[0] if outcome else None)
        return outcome

    async def _park(
        self, delivery: Delivery, label: str | None, outcome: tuple[Decision, int], stream: str,
        offset: int,
    ) -> None:  # fmt: skip
        """Publish the parked copy with its reason and offset, with a confirm.

        Raises:
            ParkFailed: the broker did not confirm it (the consumer stops here).
        """
        decision, attempts = outcome
        if not isinstance(decision, Park):  # no delay tiers on a stream: a retry parks
            decision = Park("retries-exhausted", "RetriesExhausted", str(decision))
        to, properties = parked_copy(
            delivery.message, decision, message_id=delivery.message_id, worker=self.stage.name,
            queue=self.base, attempts=attempts,
        )  # fmt: skip
        try:
            await self.stage.announce(delivery, decision)
            await self._publisher.publish(
                delivery.body,
                exchange=failure_exchange(self.base),
                routing_key=to,
                properties=properties,
            )
        except _UNSENDABLE as error:
            self._observers.unsettled(delivery, to, cast(Exception, error))
            raise ParkFailed(
                f"cannot park offset {offset} of stream {stream!r} in "
                f"{dead_letter_queue(self.base)!r}: {error}"
            ) from error
        await self._observers.settled(delivery, label, decision, attempts)

    async def drain(self, seconds: float) -> bool:
        """Start no more messages; True if the one running finished within `seconds`."""
        self.stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except TimeoutError:
            return False
        return True
