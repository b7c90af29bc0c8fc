"""The parts of fleet's runtime API the bench drives, in one place.

The runtime is changing while the bench is written (the follow-on publisher
moved from `Publisher.publish_event` to `publish_outgoing`, the inbox to a
`database_url` setting); each function here accepts either shape, so the bench
measures whatever runtime is in the tree.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from contracts import Event
from topology import Topology
from workers.runtime.publisher import Publisher
from workers.runtime.service import WorkerSettings

SendEvent = Callable[[Event, str, str], Awaitable[None]]  # (event, exchange, message_id)


def worker_settings(
    topology: Topology, name: str, url: str, *, database_url: str | None = None
) -> WorkerSettings:
    """Settings for one bench worker (prefetch and concurrency from the topology).

    Raises:
        RuntimeError: a database was asked for and this runtime has no PostgreSQL inbox.
    """
    if database_url is None:
        return WorkerSettings.from_topology(topology, name, url)
    unsupported = postgres_inbox_missing()
    if unsupported:
        raise RuntimeError(unsupported)
    return WorkerSettings.from_topology(topology, name, url, database_url=database_url)  # type: ignore[call-arg]


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
    if hasattr(publisher, "publish_event"):

        async def send_event(event: Event, exchange: str, message_id: str) -> None:
            await publisher.publish_event(  # type: ignore[attr-defined]
                event, exchange=exchange, message_id=message_id, correlation_id=message_id
            )

        return send_event

    from workers.runtime.outgoing import outgoing_event  # type: ignore[import-not-found]

    async def send_outgoing(event: Event, exchange: str, message_id: str) -> None:
        await publisher.publish_outgoing(  # type: ignore[attr-defined]
            outgoing_event(
                event,
                exchange=exchange,
                message_id=message_id,
                correlation_id=message_id,
                app_id=publisher.app_id,
            )
        )

    return send_outgoing
