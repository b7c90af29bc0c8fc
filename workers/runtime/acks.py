"""Acknowledge finished deliveries in batches without ever acking an unfinished one.

Delivery tags on a channel count up from 1. A `multiple=True` ack of tag N
settles every outstanding tag up to N, so it is only sent for N at the top of
a contiguous run of finished deliveries. When a slow delivery holds the run
back and many behind it are done, those are acked one by one instead, so they
stop holding prefetch slots.

The batcher only decides; the caller sends the frames it returns, in order,
and calls `flush()` shortly after the last finished delivery (a run that
never fills a batch must still be acked).
"""

from __future__ import annotations

Frame = tuple[int, bool]  # (delivery tag, multiple)
_NONE: list[Frame] = []


class AckBatcher:
    """Tracks one channel's deliveries and decides which ack frames to send.

    Args:
        batch: finished deliveries gathered before a multiple ack goes out.
        scatter_after: finished deliveries held behind an unfinished one before
            they are acked individually.
    """

    __slots__ = (
        "_batch",
        "_done",
        "_floor",
        "_in_flight",
        "_scatter_after",
        "_scattered",
        "_sent_upto",
    )

    def __init__(self, *, batch: int, scatter_after: int):
        self._batch = max(1, batch)
        self._scatter_after = max(1, scatter_after)
        self._floor = 0  # every tag <= floor is finished
        self._sent_upto = 0  # every tag <= sent_upto is settled on the broker
        self._done: set[int] = set()  # finished tags above the floor
        self._scattered: set[int] = set()  # tags above sent_upto settled one by one
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Deliveries received and not yet finished."""
        return self._in_flight

    def received(self) -> None:
        """Count a delivery as started."""
        self._in_flight += 1

    def abandoned(self) -> None:
        """A delivery ended unsettled (channel lost, or left for the broker to requeue)."""
        self._in_flight -= 1

    def finished(self, tag: int) -> list[Frame]:
        """Mark a delivery finished; returns the ack frames to send now."""
        self._advance(tag)
        if self._floor - self._sent_upto >= self._batch:
            return self.flush()
        if len(self._done) - len(self._scattered) >= self._scatter_after:
            return self._scatter()
        return _NONE

    def settled(self, tag: int) -> list[Frame]:
        """A delivery the caller settled itself (nack): never name it in an ack."""
        self._advance(tag)
        if tag > self._sent_upto:
            self._scattered.add(tag)
        return _NONE

    @property
    def due(self) -> bool:
        """Whether finished deliveries are waiting for their ack."""
        return self._floor > self._sent_upto

    def flush(self) -> list[Frame]:
        """The ack covering the contiguous run of finished deliveries, if one is due."""
        if self._floor <= self._sent_upto:
            return _NONE
        top = self._floor
        scattered = self._scattered
        # A multiple ack must name a tag that is still outstanding on the broker.
        while top > self._sent_upto and top in scattered:
            top -= 1
        frames = [(top, True)] if top > self._sent_upto else _NONE
        if scattered:
            self._scattered = {t for t in scattered if t > self._floor}
        self._sent_upto = self._floor
        return frames

    def _advance(self, tag: int) -> None:
        self._in_flight -= 1
        if tag == self._floor + 1:
            floor = tag
            done = self._done
            while floor + 1 in done:
                floor += 1
                done.discard(floor)
            self._floor = floor
        else:
            self._done.add(tag)

    def _scatter(self) -> list[Frame]:
        frames = [(tag, False) for tag in sorted(self._done - self._scattered)]
        self._scattered.update(tag for tag, _ in frames)
        return frames
