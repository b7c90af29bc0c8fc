"""What observes the message path: one hook interface with a no-op base.

Metrics, tracing, the counters, the log lines of failures, the saga timeline
(and the rate limits' waits) each subclass `DeliveryObserver` and
override the hooks they need. The path calls `Observers`, which knows for
every hook which observers override it, so a hook nobody implements costs one
empty loop. Observers observe: they never decide a delivery's fate and their
errors are theirs (the timeline catches its own).

A delivery's hooks, in order:

    on_throttled? ─▶ on_received ─▶ on_duplicate? ─▶ on_handled ─▶ on_finished
      ─▶ on_processed                                   (done: acked)
      ─▶ on_retried | on_parked | on_recounted          (its copy published, then acked)
         ─▶ await on_failure_settled                     (after the copy, before the ack)
      ─▶ on_unsettled                                   (its copy refused: handed back)
    on_requeued                                         (left for the broker at shutdown)

`label` is what the delivery is, for counting: the wire name of the contract
its handler takes, or None for a message of no known type.
"""

from __future__ import annotations

from collections.abc import Sequence

from workers.runtime.delivery import Delivery
from workers.runtime.retry import Decision, Park, Recount, Redeliver


class DeliveryObserver:
    """The no-op base: override what you observe."""

    def on_received(self, delivery: Delivery, label: str | None) -> None:
        """A delivery arrived and is about to be processed."""

    def on_throttled(self, delivery: Delivery, label: str | None, seconds: float) -> None:
        """A rate limit holds the delivery `seconds` before its handler runs (no retry)."""

    def on_duplicate(self, delivery: Delivery, label: str | None) -> None:
        """The inbox knew its message id: the handler is skipped, its follow-ons replayed."""

    def on_handled(self, delivery: Delivery, label: str | None, seconds: float, ok: bool) -> None:
        """The handler (with its in-process retries) returned, or failed every attempt."""

    def on_finished(self, delivery: Delivery, decision: Decision | None) -> None:
        """Processing ended: None when the delivery is done, else where it goes."""

    def on_processed(self, delivery: Delivery, label: str | None) -> None:
        """The delivery is done (its effects and follow-ons confirmed) and is acked."""

    def on_retried(
        self, delivery: Delivery, label: str | None, decision: Redeliver, attempts: int
    ) -> None:
        """Its copy went to a delay queue; the original is acked."""

    def on_parked(
        self, delivery: Delivery, label: str | None, decision: Park, attempts: int
    ) -> None:
        """Its copy went to the dead-letter queue with the reason; the original is acked."""

    def on_recounted(self, delivery: Delivery, decision: Recount) -> None:
        """A crash suspect went back to its queue's tail with its delivery count."""

    def on_unsettled(self, delivery: Delivery, to: str, error: Exception) -> None:
        """Its copy could not be published: it is handed back to the queue (nack)."""

    def on_requeued(self, delivery: Delivery) -> None:
        """Shutting down: it is left unacked for the broker to deliver again."""

    async def on_failure_settled(self, delivery: Delivery, decision: Redeliver | Park) -> None:
        """Async, after a retry or dead-letter copy was confirmed, before the ack."""


_HOOKS = [name for name in vars(DeliveryObserver) if name.startswith("on_")]


class Observers:
    """Calls each hook on the observers that implement it, in the order given."""

    def __init__(self, observers: Sequence[DeliveryObserver] = ()):
        self.all = tuple(observers)
        implementing = {
            hook: tuple(
                o for o in self.all if getattr(type(o), hook) is not getattr(DeliveryObserver, hook)
            )
            for hook in _HOOKS
        }
        self._received = implementing["on_received"]
        self._throttled = implementing["on_throttled"]
        self._duplicate = implementing["on_duplicate"]
        self._handled = implementing["on_handled"]
        self._finished = implementing["on_finished"]
        self._processed = implementing["on_processed"]
        self._retried = implementing["on_retried"]
        self._parked = implementing["on_parked"]
        self._recounted = implementing["on_recounted"]
        self._unsettled = implementing["on_unsettled"]
        self._requeued = implementing["on_requeued"]
        self._failure_settled = implementing["on_failure_settled"]

    def received(self, delivery: Delivery, label: str | None) -> None:
        for observer in self._received:
            observer.on_received(delivery, label)

    def throttled(self, delivery: Delivery, label: str | None, seconds: float) -> None:
        for observer in self._throttled:
            observer.on_throttled(delivery, label, seconds)

    def duplicate(self, delivery: Delivery, label: str | None) -> None:
        for observer in self._duplicate:
            observer.on_duplicate(delivery, label)

    def handled(self, delivery: Delivery, label: str | None, seconds: float, ok: bool) -> None:
        for observer in self._handled:
            observer.on_handled(delivery, label, seconds, ok)

    def finished(self, delivery: Delivery, decision: Decision | None) -> None:
        for observer in self._finished:
            observer.on_finished(delivery, decision)

    def processed(self, delivery: Delivery, label: str | None) -> None:
        for observer in self._processed:
            observer.on_processed(delivery, label)

    async def settled(
        self, delivery: Delivery, label: str | None, decision: Decision, attempts: int
    ) -> None:
        """A failure copy was confirmed: the hook for its kind, then the async ones."""
        match decision:
            case Redeliver():
                for observer in self._retried:
                    observer.on_retried(delivery, label, decision, attempts)
            case Park():
                for observer in self._parked:
                    observer.on_parked(delivery, label, decision, attempts)
            case Recount():
                for observer in self._recounted:
                    observer.on_recounted(delivery, decision)
                return
        for observer in self._failure_settled:
            await observer.on_failure_settled(delivery, decision)

    def unsettled(self, delivery: Delivery, to: str, error: Exception) -> None:
        for observer in self._unsettled:
            observer.on_unsettled(delivery, to, error)

    def requeued(self, delivery: Delivery) -> None:
        for observer in self._requeued:
            observer.on_requeued(delivery)
