"""The one reconnect loop of every long-lived connection: a worker's, the webhook
dispatcher's, and the publishing link's (the ingress, `fleet publish`).

    connect to the first node that answers ─▶ the session (consume, or keep a channel)
      no node answers  ─▶ broker.unreachable, wait (exponential backoff, full jitter), again
      the login or TLS refused ─▶ stop and say so (it stays wrong), unless told to retry
      connection lost  ─▶ broker.connection_lost, start from the next node, again
      session began again after a loss ─▶ broker.failover, with how long it took

Jitter keeps a fleet of processes from reconnecting in one burst after a node
comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aio_pika.abc import AbstractConnection

from topology import BrokerRefused, BrokerUnreachable
from workers.runtime.connection import CONNECTION_ERRORS, connect
from workers.runtime.nodes import NodeRing, node_label
from workers.runtime.waiting import wait_any

log = structlog.get_logger("fleet.broker")


@dataclass(frozen=True)
class Backoff:
    """How long to wait after the n-th failed round of connection attempts: exponential
    from `base`, capped at `cap`, with full jitter (at least `floor`)."""

    base: float = 0.5
    cap: float = 30.0
    floor: float = 0.1

    def delay(self, failures: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** (failures - 1))
        return random.uniform(self.floor, max(self.floor, ceiling))


class Connected:
    """What a session is handed with its connection: `began()` when it is in business."""

    def __init__(self, nodes: NodeRing, lost_at: float | None, fields: Mapping[str, Any]):
        self.nodes = nodes
        self.started = False
        self._lost_at = lost_at
        self._fields = fields

    def began(self) -> float | None:
        """The session consumes (or can publish): log the failover if this follows a
        loss; the seconds it took, or None."""
        self.started = True
        if self._lost_at is None:
            return None
        seconds = time.monotonic() - self._lost_at
        self._lost_at = None
        log.info(
            "broker.failover",
            node=node_label(self.nodes.current),
            seconds=round(seconds, 3),
            **self._fields,
        )
        return seconds


#: A session: runs on one connection; returns True when it was lost, False on a stop.
Session = Callable[[AbstractConnection, Connected], Awaitable[bool]]


async def keep_connected(
    nodes: NodeRing,
    session: Session,
    *,
    name: str,
    stop: asyncio.Event,
    backoff: Backoff = Backoff(),
    retry_refused: bool = False,
    fields: Mapping[str, Any] | None = None,
    on_unreachable: Callable[[BrokerUnreachable], None] | None = None,
    on_lost: Callable[[], None] | None = None,
) -> None:
    """Run `session` on a connection to the first node that answers, again and again,
    until `stop` is set.

    Args:
        nodes: the broker's nodes, tried in turn.
        session: what runs on each connection.
        name: the connection's name (management UI).
        stop: ends the loop (the session sees it too, and returns False).
        backoff: the pause after failed rounds of connection attempts.
        retry_refused: retry a refused login or TLS handshake as if unreachable (a
            service that must come back on its own: the ingress).
        fields: added to every log line (worker=…, subscription=…).
        on_unreachable: told of each failed round (the link fails publishes fast).
        on_lost: told of each lost connection.

    Raises:
        BrokerRefused: the broker refused the login or TLS, unless `retry_refused`.
    """
    extra = dict(fields or {})
    failures = 0
    lost_at: float | None = None
    while not stop.is_set():
        try:
            connection = await connect(nodes, name=name)
        except BrokerUnreachable as exc:
            if isinstance(exc, BrokerRefused) and not retry_refused:
                raise  # a wrong password or CA stays wrong: say so once and stop
            failures += 1
            delay = backoff.delay(failures)
            log.warning("broker.unreachable", error=str(exc), retry_in=round(delay, 2), **extra)
            if on_unreachable is not None:
                on_unreachable(exc)
            await wait_any(stop, seconds=delay)
            continue
        failures = 0
        connected = Connected(nodes, lost_at, extra)
        try:
            lost = await session(connection, connected)
        except CONNECTION_ERRORS as exc:
            lost = True
            log.warning("broker.connection_lost", error=str(exc), **extra)
        finally:
            if not connection.is_closed:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await connection.close()
        if lost and not stop.is_set():
            if connected.started:  # a failover is timed from a session that had begun
                lost_at = time.monotonic()
            nodes.lost()
            if on_lost is not None:
                on_lost()
            # Another node is usually up at once: retry soon, with jitter.
            await wait_any(stop, seconds=backoff.delay(1))
