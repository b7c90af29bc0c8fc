"""The `fleet_broker` fixture's value: one test's vhost with the project's topology,
its workers, publishing, and waits for outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from contracts import Event
from topology import Topology
from topology.routing import routes
from workers.errors import WorkerNotFound
from workers.loader import load_worker
from workers.runtime.observers import Counters
from workers.runtime.service import WorkerSettings, run_worker
from workers.runtime.shutdown import Shutdown
from workers.testing import (
    DEFAULT_TIMEOUT,
    DeadLetter,
    Tap,
    WorkerProcess,
    dead_lettered,
    publish,
    publish_body,
    queue_depth,
    take,
    tap,
)

E = TypeVar("E", bound=Event)

#: Seconds an in-process worker may take to finish its in-flight work when its block ends.
DRAIN_SECONDS = 5.0


class FleetBroker:
    """One test's vhost of the test broker, with the project's topology applied.

    Workers run in the test's process (`running`) or as ``fleet worker run``
    processes (`process`); events go in with `publish` and raw bodies with
    `publish_body`; outcomes are waited for, never slept for: `tap` sees what an
    exchange routes, `take` reads a queue nobody consumes, `dead_lettered` reads
    ``<queue>.dead``. Every wait fails after `timeout` seconds naming what it
    waited for, and returns as soon as it holds.

    Attributes:
        vhost: the test's vhost, deleted after the test with all it holds.
        amqp_url: the broker URL of that vhost.
        management_url: the management API (for `apply`, `fleet status`, …).
        topology: the topology applied to the vhost.
        topology_file: where it was read from.
        project_root: the rootdir, on the worker processes' PYTHONPATH.
    """

    def __init__(
        self,
        *,
        vhost: str,
        amqp_url: str,
        management_url: str,
        topology: Topology,
        topology_file: Path,
        project_root: Path,
        request: pytest.FixtureRequest,
    ):
        self.vhost = vhost
        self.amqp_url = amqp_url
        self.management_url = management_url
        self.topology = topology
        self.topology_file = topology_file
        self.project_root = project_root
        self._request = request
        self._processes: list[WorkerProcess] = []

    # -- Workers

    @contextlib.asynccontextmanager
    async def running(
        self, *names: str, database: bool = False, timeout: float = DEFAULT_TIMEOUT
    ) -> AsyncIterator[None]:
        """Run these workers in this process, as ``fleet worker run`` would, for the block.

        Each consumes before the block starts; when it ends they stop as on SIGTERM
        (in-flight work finishes, up to `DRAIN_SECONDS`). A worker that failed on
        its own is raised then.

        Args:
            names: the workers' names in the topology.
            database: give them this test's database (`database`) for their inbox and
                ``ctx.db``; without one, they dedupe in memory.
            timeout: how long each may take to start consuming.

        Raises:
            LookupError: the topology has no such worker.
            WorkerNotFound: its module does not import, or holds no such Worker.
            RuntimeError: a worker stopped, or did not consume, before `timeout`.
        """
        database_url = self.database() if database else None
        settings = [self._settings(name, database_url) for name in names]
        shutdown = Shutdown()
        tasks: list[asyncio.Task[Counters]] = []
        try:
            for each in settings:
                ready = asyncio.Event()
                task = asyncio.create_task(
                    run_worker(each, shutdown, ready=ready), name=f"fleet worker {each.name}"
                )
                tasks.append(task)
                await _consuming(task, ready, each.name, timeout)
            yield
        except BaseException as exc:
            for failure in await _stop(tasks, shutdown):
                if failure is not exc:
                    exc.add_note(f"meanwhile, a worker failed: {failure!r}")
            raise
        else:
            failures = await _stop(tasks, shutdown)
            if failures:
                raise failures[0]
        finally:
            # run_worker freezes what it set up (a shorter GC pause for a long-lived
            # process); in a test session that would keep every test's garbage alive.
            gc.unfreeze()

    def _settings(self, name: str, database_url: str | None) -> WorkerSettings:
        try:
            return WorkerSettings.from_topology(
                self.topology,
                name,
                self.amqp_url,
                drain_timeout=DRAIN_SECONDS,
                database_url=database_url,
            )
        except KeyError as exc:
            raise LookupError(str(exc.args[0])) from None

    def process(
        self,
        name: str,
        *,
        database: bool = False,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> WorkerProcess:
        """Start ``fleet worker run NAME`` on this vhost and block until it consumes; it is
        stopped (SIGTERM) after the test. Its JSON log lines are in ``.logs``.

        Args:
            name: the worker's name in the topology.
            database: give it this test's database (`database`).
            args: more ``worker run`` options (``["--concurrency", "1"]``).
            env: more environment variables.
        """
        options = [*args]
        if "--management-url" not in options:
            # Its lag metrics read the test broker's API, wherever FLEET_TEST_MANAGEMENT_URL says.
            options += ["--management-url", self.management_url]
        if database:
            options += ["--database-url", self.database()]
        worker = WorkerProcess(
            name,
            topology_file=self.topology_file,
            url=self.amqp_url,
            pythonpath=[self.project_root],
            args=options,
            env=env,
        )
        if not database:
            # A developer's FLEET_DATABASE_URL would give the worker their database's inbox.
            worker.env.pop("FLEET_DATABASE_URL", None)
        self._processes.append(worker)
        return worker.start()

    # -- Publishing

    async def publish(
        self,
        event: Event,
        *,
        exchange: str | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Publish `event` in fleet's wire format, with a confirm; its message id.

        Args:
            exchange: where to (default: the exchange that routes it to the workers
                handling it, see `exchange_for`).
            message_id, correlation_id, headers: as for `workers.testing.publish`.

        Raises:
            LookupError: no `exchange` given, and not exactly one routes the event.
            PublishFailed: nothing is bound for its routing key there.
        """
        target = exchange or exchange_for(self.topology, type(event), self._handles(type(event)))
        return await publish(
            self.amqp_url,
            event,
            exchange=target,
            message_id=message_id,
            correlation_id=correlation_id,
            headers=headers,
        )

    async def publish_body(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | str,
        *,
        type: str | None = None,
        message_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Publish raw bytes (a poison message, say) as any AMQP client could; its message id.

        Args:
            type: the `type` property (a contract's wire name), if any.
            headers: the AMQP headers (default ``{"version": 1}``).
        """
        return await publish_body(
            self.amqp_url, exchange, routing_key, body, type=type, message_id=message_id,
            headers=headers,
        )  # fmt: skip

    def _handles(self, event_type: type[Event]) -> Callable[[str], bool]:
        """Whether a worker of the topology has a handler for `event_type`."""

        def handles(name: str) -> bool:
            try:
                worker = load_worker(name, self.topology.workers[name])
            except WorkerNotFound:
                return False
            return worker.handler_for(event_type.__wire_name__, event_type.__version__) is not None

        return handles

    # -- Observing

    def tap(self, exchange: str, *binding_keys: str) -> contextlib.AbstractAsyncContextManager[Tap]:
        """Listen to what `exchange` routes for the block (`workers.testing.tap`), taking
        nothing from any consumer: enter it before publishing what it should see.

        Args:
            binding_keys: the keys to bind (default: every message, see `tap_bindings`).
        """
        keys = binding_keys or tap_bindings(self.topology, exchange)
        return tap(self.amqp_url, exchange, *keys)

    async def take(self, queue: str, event_type: type[E], *, timeout: float = DEFAULT_TIMEOUT) -> E:
        """The next event of this contract that reached `queue`, a queue no worker consumes
        (`workers.testing.take`)."""
        __tracebackhide__ = True  # pytest: a failure points at the test's line
        return await take(self.amqp_url, queue, event_type, timeout=timeout)

    async def dead_lettered(
        self,
        queue: str,
        *,
        reason: str | None = None,
        message_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> DeadLetter:
        """The next message parked from work queue `queue`, checked for `reason`
        (`workers.testing.dead_lettered`)."""
        __tracebackhide__ = True  # pytest: a failure points at the test's line
        return await dead_lettered(
            self.amqp_url, queue, reason=reason, message_id=message_id, timeout=timeout
        )

    async def depth(self, queue: str) -> int:
        """Messages ready in `queue` right now."""
        return await queue_depth(self.amqp_url, queue)

    # -- State

    def database(self) -> str:
        """This test's own PostgreSQL database (its URL), the `fleet_database` fixture's:
        created on first use, dropped after the test."""
        url: str = self._request.getfixturevalue("fleet_database")
        return url

    def close(self) -> None:
        """Stop the worker processes this test started."""
        for worker in reversed(self._processes):
            worker.stop()
        self._processes.clear()


async def _consuming(
    task: asyncio.Task[Counters], ready: asyncio.Event, name: str, timeout: float
) -> None:
    """Return once the worker consumes; raise if it stopped or took longer than `timeout`."""
    waiting = asyncio.ensure_future(ready.wait())
    try:
        await asyncio.wait({task, waiting}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if ready.is_set():
        return
    if task.done():
        task.result()  # the worker's own error, if it raised one
        raise RuntimeError(f"worker {name!r} stopped before it consumed")
    raise RuntimeError(f"worker {name!r} did not consume within {timeout:g}s")


async def _stop(tasks: list[asyncio.Task[Counters]], shutdown: Shutdown) -> list[BaseException]:
    """Stop the workers gracefully (then forcibly); the errors of those that failed."""
    shutdown.request()
    if not tasks:
        return []
    _, pending = await asyncio.wait(tasks, timeout=DRAIN_SECONDS + 5)
    if pending:
        shutdown.forced.set()
        _, pending = await asyncio.wait(pending, timeout=5)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return [
        error for task in tasks if not task.cancelled() and (error := task.exception()) is not None
    ]


def exchange_for(
    topology: Topology,
    event_type: type[Event],
    handles: Callable[[str], bool] = lambda worker: False,
) -> str:
    """The exchange to publish `event_type` to: the one whose bindings route its routing
    key to the queue of a worker that handles it (`handles(worker name)`), else the one
    whose bindings route it to any queue.

    Raises:
        LookupError: no exchange routes it, or several do (then say ``exchange=``).
    """
    key = event_type.__routing_key__

    def routing(queues: Iterable[str]) -> list[str]:
        return sorted(
            {
                binding.exchange
                for queue in queues
                for binding in topology.queues[queue].bind
                if binding.exchange in topology.exchanges
                and routes(topology.exchanges[binding.exchange].type, binding.routing_key, key)
            }
        )

    consumed = {spec.queue for name, spec in topology.workers.items() if handles(name)}
    found = routing(q for q in consumed if q in topology.queues) or routing(topology.queues)
    if len(found) == 1:
        return found[0]
    where = f"routes through {', '.join(map(repr, found))}" if found else "is routed nowhere"
    raise LookupError(
        f"{event_type.__wire_name__} ({key}) {where} in the topology: "
        "say which exchange with exchange=..."
    )


def tap_bindings(topology: Topology, exchange: str) -> tuple[str, ...]:
    """The binding keys that let a tap see all `exchange` routes: ``#`` on a topic
    exchange, any key on fanout and headers ones, and on a direct exchange each key
    the topology binds there.

    Raises:
        LookupError: a direct exchange the topology binds nothing to.
    """
    spec = topology.exchanges.get(exchange)
    kind = spec.type if spec is not None else "topic"
    if kind == "topic":
        return ("#",)
    if kind != "direct":
        return ("",)  # fanout ignores the key; headers with no arguments match every message
    keys = sorted(
        {b.routing_key for q in topology.queues.values() for b in q.bind if b.exchange == exchange}
    )
    if not keys:
        raise LookupError(f"direct exchange {exchange!r} has no bindings: name the keys to tap")
    return tuple(keys)
