"""The parts of fleet's runtime API the bench drives, in one place.

The runtime is changing while the bench is written (the follow-on publisher
moved from `Publisher.publish_event` to `publish_outgoing`, the inbox to a
`database_url` setting); each function here accepts either shape, so the bench
measures whatever runtime is in the tree.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from contracts import Event
from topology import Topology
from workers.runtime.publisher import Publisher
from workers.runtime.service import WorkerSettings

SendEvent = Callable[[Event, str, str], Awaitable[None]]  # (event, exchange, message_id)


def worker_settings(
    topology: Topology,
    name: str,
    url: str,
    *,
    database_url: str | None = None,
    metrics: bool = False,
) -> WorkerSettings:
    """Settings for one bench worker (prefetch and concurrency from the topology);
    `metrics` counts for Prometheus without serving (and polls the queue's depth).

    Raises:
        RuntimeError: a database was asked for and this runtime has no PostgreSQL inbox.
    """
    if metrics:
        return WorkerSettings.from_topology(
            topology, name, url, database_url=database_url, metrics_port=0
        )
    if database_url is None:
        return WorkerSettings.from_topology(topology, name, url)
    unsupported = postgres_inbox_missing()
    if unsupported:
        raise RuntimeError(unsupported)
    # Passed by keyword from a dict: older runtimes have no such parameter.
    options: dict[str, Any] = {"database_url": database_url}
    return WorkerSettings.from_topology(topology, name, url, **options)


def postgres_inbox_missing() -> str | None:
    """Why this runtime cannot run with a PostgreSQL inbox, or None if it can."""
    from workers.runtime import inbox

    if not hasattr(inbox, "PostgresInbox"):
        return "workers.runtime.inbox has no PostgresInbox yet"
    if "database_url" not in inspect.signature(WorkerSettings.from_topology).parameters:
        return "WorkerSettings.from_topology takes no database_url yet"
    return None


def event_sender(publisher: Publisher) -> SendEvent:
    """A function publishing one event through `publisher` and awaiting its confirm."""
    # Looked up by name: each runtime has only one of the two APIs.
    publish_event = getattr(publisher, "publish_event", None)
    if publish_event is not None:

        async def send_event(event: Event, exchange: str, message_id: str) -> None:
            await publish_event(
                event, exchange=exchange, message_id=message_id, correlation_id=message_id
            )

        return send_event

    outgoing_event = importlib.import_module("workers.runtime.outgoing").outgoing_event
    publish_outgoing = publisher.publish_outgoing

    async def send_outgoing(event: Event, exchange: str, message_id: str) -> None:
        await publish_outgoing(
            outgoing_event(
                event,
                exchange=exchange,
                message_id=message_id,
                correlation_id=message_id,
                app_id=publisher.app_id,
            )
        )

    return send_outgoing
