"""Helpers for testing fleet workers: a handler alone, and workers on a real broker.

A handler without a broker, as the runtime would call it:

    events = await testing.call(inventory, OrderPlaced(order_id="o-1", ...))
    assert events == [StockReserved(order_id="o-1")]

Waiting for a fact instead of sleeping (the timeout bounds a failure only):

    await testing.eventually(lambda: order_status("o-1") == "confirmed", what="o-1 confirmed")

On a real broker (the pytest plugin's `fleet_broker` fixture wraps these with the
test's vhost and topology): `publish` and `publish_body` send in fleet's wire
format, `tap` sees what an exchange routes without taking anything from a
consumer, `take` reads a queue nobody consumes, `dead_lettered` reads
``<queue>.dead`` and its reason. `WorkerProcess` runs `fleet worker run` as a real
process and returns once it consumes; `collect` waits for messages on a queue.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import inspect
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, overload

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from pamqp.commands import Basic

from contracts import Event, decode, describe, encode
from topology.names import dead_letter_queue
from workers.context import Context
from workers.runtime import headers as h
from workers.runtime.connection import connect, publishing_channel
from workers.runtime.outgoing import JSON, PERSISTENT, outgoing_event
from workers.runtime.publisher import Publisher
from workers.worker import Emitted, Worker

E = TypeVar("E", bound=Event)
T = TypeVar("T")

#: How long a wait may last before it fails: a bound on failure, never a measurement.
DEFAULT_TIMEOUT = 30.0
#: The first pause between two checks; pauses double up to the wait's `interval`.
FIRST_PAUSE = 0.01
#: The least time an async check gets to answer, even right at the deadline.
MIN_CHECK_SECONDS = 1.0


# -- A handler without a broker ---------------------------------------------------------


def context(
    *,
    worker: str = "test",
    queue: str | None = None,
    event_type: str = "Event",
    message_id: str = "m-1",
    correlation_id: str | None = None,
    causation_id: str | None = None,
    attempt: int = 1,
    redelivered: bool = False,
    headers: Mapping[str, Any] | None = None,
    db: Any = None,
) -> Context:
    """A `Context` like the one the runtime builds for a delivery, with a default for every id.

    Args:
        worker: the worker's name.
        queue: the queue it consumes (default: the worker's name).
        event_type: the delivered event's wire name.
        message_id: the delivery's message id.
        correlation_id: the saga's id (default: the message id, as for a saga's first event).
        causation_id: the id of the message that caused this one, if any.
        attempt: the handler call's number (1 for the first; the runtime counts every
            retry tier).
        redelivered: whether the broker redelivered the message.
        headers: the message's AMQP headers.
        db: what the handler sees as ``ctx.db`` (an asyncpg connection, say).
    """
    ctx = Context(
        worker=worker,
        queue=queue if queue is not None else worker,
        event_type=event_type,
        message_id=message_id,
        correlation_id=correlation_id if correlation_id is not None else message_id,
        causation_id=causation_id,
        attempt=attempt,
        redelivered=redelivered,
        headers=headers,
    )
    ctx.db = db
    return ctx


def emitted(result: Emitted) -> list[Event]:
    """A handler's result as the list of follow-on events the runtime would publish:
    an event becomes ``[event]``, None becomes ``[]``."""
    if result is None:
        return []
    if isinstance(result, Event):
        return [result]
    return list(result)


async def call(worker: Worker, event: Event, ctx: Context | None = None) -> list[Event]:
    """Hand `event` to `worker`'s handler for its type, as a delivery would; the follow-ons.

    The event first travels as on the wire (encoded, then decoded into the handler's
    contract), so one that could never arrive (a field past its bounds, say) fails here
    as it would at the worker's door. Each follow-on makes the same trip, and is returned
    as the next worker would receive it.

    Args:
        worker: the Worker whose handler to call.
        event: the delivered event.
        ctx: the delivery's context (default: `context()` for this worker and event type).

    Raises:
        LookupError: the worker has no handler for the event's wire name and version.
        InvalidPayload: the event, or a follow-on, would not decode as its contract.
    """
    event_type = type(event)
    spec = worker.handler_for(event_type.__wire_name__, event_type.__version__)
    if spec is None:
        handled = ", ".join(describe(s.event_type) for s in worker.handlers) or "nothing"
        raise LookupError(
            f"worker {worker.name!r} has no handler for {describe(event_type)} "
            f"(it handles {handled})"
        )
    if ctx is None:
        ctx = context(worker=worker.name, event_type=event_type.__wire_name__)
    result = await spec.function(decode(spec.event_type, encode(event)), ctx)
    return [decode(type(e), encode(e)) for e in emitted(result)]


# -- Waiting for a fact -----------------------------------------------------------------


@overload
async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.1,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.1,
) -> T: ...


async def eventually(
    check: Callable[[], Any],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.1,
) -> Any:
    """Check until `check` holds, and return what it returned; fail once `timeout` has passed.

    A check is a plain or an async function of no arguments. It holds when it returns a
    truthy value; a falsy one, or an AssertionError it raises (so a check may assert, to
    say what differs, and then ``return True``), means not yet. Any other exception
    ends the wait at once. The pauses between checks grow from 10 ms to `interval`.

        await eventually(lambda: "m-1" in receiver.accepted, what="m-1 accepted")
        row = await eventually(lambda: db.fetchrow(QUERY, "o-1"), what="o-1 stored")

    `timeout` bounds how long a failing wait takes; a passing one returns as soon as the
    check holds, so it measures nothing. The check runs at least once, and once more at
    the deadline; an async check still running at the deadline gets at least a second to answer.

    Raises:
        AssertionError: the check did not hold within `timeout`: the message names `what`
            and the last check's answer (its AssertionError is the cause).
    """
    __tracebackhide__ = True  # pytest: a failure points at the test's line
    attempts = _Attempts(what, timeout, interval)
    while True:
        value = await attempts.ask(check)
        if value:
            return value
        pause = attempts.pause()
        if pause is None:
            raise attempts.gave_up() from attempts.error
        await asyncio.sleep(pause)


def eventually_blocking(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.1,
    pause: Callable[[float], object] = time.sleep,
) -> T:
    """`eventually` for code that has no event loop: blocks between checks with `pause`
    (pika's ``connection.sleep`` keeps its connection serviced meanwhile).

    The check must be a plain function; a check that hangs is not interrupted.

    Raises:
        AssertionError: as `eventually`.
        TypeError: the check returned an awaitable (``await eventually(...)`` instead).
    """
    __tracebackhide__ = True  # pytest: a failure points at the test's line
    attempts = _Attempts(what, timeout, interval)
    while True:
        value = attempts.ask_blocking(check)
        if value:
            return value
        seconds = attempts.pause()
        if seconds is None:
            raise attempts.gave_up() from attempts.error
        pause(seconds)


class _Attempts:
    """The bookkeeping of one wait: its deadline, the next pause, the last check's answer."""

    def __init__(self, what: str, timeout: float, interval: float):
        self.what = what
        self.timeout = timeout
        self.interval = max(interval, 0.0)
        self.deadline = time.monotonic() + timeout
        self.next_pause = min(FIRST_PAUSE, self.interval)
        self.last = ""
        self.error: AssertionError | None = None

    async def ask(self, check: Callable[[], Any]) -> Any:
        """One check's answer, None for an AssertionError or a check too slow to answer."""
        try:
            value = check()
            if inspect.isawaitable(value):
                bound = max(self.deadline - time.monotonic(), MIN_CHECK_SECONDS)
                scope = asyncio.timeout(bound)
                try:
                    async with scope:
                        value = await value
                except TimeoutError:
                    if not scope.expired():
                        raise  # the check's own TimeoutError
                    self.last = f"did not answer within {bound:.1f}s"
                    return None
        except AssertionError as error:
            self.failed(error)
            return None
        return self.answered(value)

    def ask_blocking(self, check: Callable[[], T]) -> T | None:
        try:
            value = check()
        except AssertionError as error:
            self.failed(error)
            return None
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()
            raise TypeError(f"the check for {self.what} is async: await eventually(...) instead")
        return self.answered(value)

    def failed(self, error: AssertionError) -> None:
        self.error = error
        detail = str(error).strip().splitlines()
        self.last = "failed: " + (detail[0] if detail else type(error).__name__)

    def answered(self, value: T) -> T:
        if not value:
            self.error = None
            self.last = f"returned {_shown(value)}"
        return value

    def pause(self) -> float | None:
        """Seconds to wait before the next check, or None once the deadline has passed."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            return None
        seconds = min(self.next_pause, left)
        self.next_pause = min(self.next_pause * 2, self.interval) or self.interval
        return seconds

    def gave_up(self) -> AssertionError:
        return AssertionError(
            f"timed out after {self.timeout:g}s waiting for {self.what}; the last check {self.last}"
        )


def _shown(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class WorkerProcess:
    """A `fleet worker run NAME` subprocess with JSON logs captured.

    Args:
        name: the worker's name in the topology.
        topology_file: the topology file it reads.
        url: the broker URL (with the test's vhost).
        pythonpath: folders to put on PYTHONPATH (where the worker module lives).
        args: extra `worker run` options, e.g. ``["--prefetch", "10"]``; without
            ``--metrics-port`` the process serves no metrics (tests run many at once).
        env: extra environment variables.
    """

    def __init__(
        self,
        name: str,
        *,
        topology_file: str | os.PathLike[str],
        url: str,
        pythonpath: Sequence[str | os.PathLike[str]] = (),
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ):
        self.name = name
        self.command = [
            sys.executable,
            "-m",
            "workers.cli",
            "--log-format",
            "json",
            "worker",
            "run",
            name,
            "--file",
            str(topology_file),
            "--url",
            url,
            *args,
        ]
        if "--metrics-port" not in args:
            self.command += ["--metrics-port", "0"]
        root = Path(__file__).resolve().parent.parent
        paths = [str(p) for p in pythonpath] + [str(root)]
        self.env = {
            **os.environ,
            **(env or {}),
            "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]),
        }
        self.logs: list[dict[str, Any]] = []
        self.output: list[str] = []
        #: The log event that says the process consumes.
        self.ready_event = "worker.consuming"
        self._consuming = threading.Event()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def start(self, timeout: float = 30.0) -> Self:
        """Start the process and wait until it consumes (or fail with its output)."""
        self._consuming.clear()
        self._process = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self._process,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._consuming.wait(0.05):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._join_reader()
                raise RuntimeError(
                    f"worker {self.name} did not start (exit {self._process.poll()}):\n"
                    + "\n".join(self.output[-20:])
                )
        return self

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send `sig` and wait for the exit code."""
        process = self._process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(sig)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        self._join_reader()
        return code

    def wait(self, seconds: float) -> int | None:
        """Wait up to `seconds` for the process to exit by itself; its exit code, or None."""
        if self._process is None:
            return None
        try:
            code = self._process.wait(seconds)
        except subprocess.TimeoutExpired:
            return None
        self._join_reader()
        return code

    def kill(self) -> None:
        """SIGKILL: the process dies mid-flight, as in a crash."""
        self.stop(signal.SIGKILL)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log lines with this event name (``message.dead_lettered``, …)."""
        return [line for line in self.logs if line.get("event") == name]

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            self.output.append(raw.rstrip())
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            self.logs.append(line)
            if line.get("event") == self.ready_event:
                self._consuming.set()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class OutboxRelayProcess(WorkerProcess):
    """A `fleet outbox run` subprocess; starts once it publishes or stands by (another
    relay is active).

    Args:
        database_url: the producers' database.
        topology_file, url, env, args: as for `WorkerProcess`.
    """

    def __init__(
        self,
        *,
        database_url: str,
        topology_file: str | os.PathLike[str],
        url: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ):
        super().__init__("outbox", topology_file=topology_file, url=url, env=env)
        self.command = [
            sys.executable,
            *("-m", "workers.cli", "--log-format", "json", "outbox", "run"),
            *("--file", str(topology_file), "--url", url, "--database-url", database_url),
            *args,
        ]
        if "--metrics-port" not in args:
            self.command += ["--metrics-port", "0"]
        self.ready_event = "outbox.ready"

    @property
    def active(self) -> bool:
        """Whether it said it holds the relay lock (and last said so after standing by)."""
        ready = self.events("outbox.ready")
        return bool(ready) and bool(ready[-1].get("active"))


class WebhooksProcess(WorkerProcess):
    """A `fleet webhooks run [NAME...]` subprocess; starts once every subscription consumes.

    Args:
        names: the subscriptions (default: all of the file's).
        topology_file, url, env, args: as for `WorkerProcess`.
    """

    def __init__(
        self,
        *names: str,
        topology_file: str | os.PathLike[str],
        url: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ):
        super().__init__("webhooks", topology_file=topology_file, url=url, env=env)
        self.command = [
            sys.executable,
            "-m",
            "workers.cli",
            "--log-format",
            "json",
            "webhooks",
            "run",
            *names,
            "--file",
            str(topology_file),
            "--url",
            url,
            *args,
        ]
        self.ready_event = "webhooks.consuming"


@dataclass(frozen=True)
class Received:
    """A message taken off a queue by `collect`, a tap or `take`."""

    body: bytes
    type: str | None
    message_id: str | None
    correlation_id: str | None
    headers: dict[str, Any]
    routing_key: str | None
    redelivered: bool

    def json(self) -> Any:
        return json.loads(self.body)

    # `builtins.type`: in this class, `type` is the message's type property.
    def carries(self, event_type: builtins.type[Event]) -> bool:
        """Whether its `type` and `version` header are those of `event_type`."""
        version = self.headers.get(h.VERSION, 1)
        return bool(self.type == event_type.__wire_name__ and version == event_type.__version__)

    def decode(self, event_type: builtins.type[E]) -> E:
        """The body as `event_type` (`contracts.decode`: InvalidPayload names a bad field)."""
        return decode(event_type, self.body)

    def summary(self) -> str:
        """``BreadBaked m-1 (bread.baked)``: how a failed wait lists what it saw."""
        return f"{self.type or '(no type)'} {self.message_id or '(no id)'} ({self.routing_key})"


class DeadLetter(Received):
    """A message parked in ``<queue>.dead``, with what fleet's headers say about it."""

    @property
    def reason(self) -> str | None:
        """``decode``, ``retries-exhausted``, ``permanent`` … (docs/concepts/message-path.md)."""
        return _text(self.headers.get(h.REASON))

    @property
    def error_type(self) -> str | None:
        return _text(self.headers.get(h.ERROR_TYPE))

    @property
    def error(self) -> str | None:
        return _text(self.headers.get(h.ERROR_MESSAGE))

    @property
    def attempts(self) -> int:
        """Handler calls made before it was parked, across every retry tier."""
        return int(self.headers.get(h.ATTEMPTS) or 0)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


R = TypeVar("R", bound=Received)


def _received(message: AbstractIncomingMessage, kind: type[R]) -> R:
    return kind(
        body=message.body,
        type=message.type,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        headers=dict(message.headers),
        routing_key=message.routing_key,
        redelivered=bool(message.redelivered),
    )


async def collect(url: str, queue: str, count: int, *, seconds: float = 30.0) -> list[Received]:
    """Consume and ack messages from `queue` until `count` arrived or `seconds` passed.

    Returns what arrived (fewer than `count` on timeout, so the caller's assertion
    says what was missing).
    """
    received: list[Received] = []
    done = asyncio.Event()
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=256)
        source = await channel.get_queue(queue, ensure=False)

        async def on_message(message: AbstractIncomingMessage) -> None:
            received.append(_received(message, Received))
            await message.ack()
            if len(received) >= count:
                done.set()

        if count > 0:
            await source.consume(on_message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), seconds)
    finally:
        await connection.close()
    return received


async def queue_depth(url: str, queue: str) -> int:
    """Ready messages in `queue` right now (passive declare)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await connection.close()


#: The test broker's rabbitmqctl, split as a shell would (``scripts/rabbit4 ctl`` for the
#: RabbitMQ 4.0 node beside the machine's); unset, plain ``rabbitmqctl``.
RABBITMQCTL_VARIABLE = "FLEET_TEST_RABBITMQCTL"


def rabbitmqctl_command() -> list[str]:
    """The command that runs rabbitmqctl on the test broker's node: FLEET_TEST_RABBITMQCTL
    split into words, else ``["rabbitmqctl"]``."""
    return shlex.split(os.environ.get(RABBITMQCTL_VARIABLE, "")) or ["rabbitmqctl"]


async def rabbitmqctl(*commands: str, ctl: Sequence[str] | None = None) -> None:
    """Run `rabbitmqctl COMMAND` for each command in turn (``"stop_app"``,
    ``"start_app"``, ``"await_startup"``), failing on the first that fails.

    Args:
        commands: one rabbitmqctl command each, without arguments.
        ctl: the rabbitmqctl to run (default: `rabbitmqctl_command()`), so that a
            test restarts the node behind its FLEET_TEST_AMQP_URL, not the machine's.
    """
    program = list(ctl) if ctl is not None else rabbitmqctl_command()
    for command in commands:
        process = await asyncio.create_subprocess_exec(
            *program, command,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        if await process.wait() != 0:
            raise RuntimeError(f"{' '.join(program)} {command} failed")


# -- Publishing and observing on a real broker ------------------------------------------


def new_message_id() -> str:
    """A fresh message id for a test's publish (``test-…``)."""
    return f"test-{uuid.uuid4().hex[:12]}"


async def publish(
    url: str,
    event: Event,
    *,
    exchange: str,
    message_id: str | None = None,
    correlation_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
) -> str:
    """Publish `event` to `exchange` in fleet's wire format and wait for the confirm.

    The message is the one a worker would publish as a follow-on: its JSON body, `type`
    and `version`, persistent, with `mandatory` set.

    Args:
        url: the broker URL (with the test's vhost).
        event: the event; its contract gives the routing key.
        exchange: the exchange to publish to.
        message_id: the message id (default: a fresh ``test-…`` id).
        correlation_id: the saga id (default: the message id, starting a saga).
        headers: AMQP headers to add (``traceparent``, say).

    Returns:
        The message id, to find the message again (in a dead-letter queue, say).

    Raises:
        PublishFailed: nothing is bound for the routing key, or the broker refused it.
    """
    message_id = message_id or new_message_id()
    message = outgoing_event(
        event,
        exchange=exchange,
        message_id=message_id,
        correlation_id=correlation_id or message_id,
        app_id="fleet.testing",
    )
    properties = message.properties()
    if headers:
        properties.headers = {**(properties.headers or {}), **headers}
    await _publish(url, message.body, exchange, message.routing_key, properties)
    return message_id


async def publish_body(
    url: str,
    exchange: str,
    routing_key: str,
    body: bytes | str,
    *,
    type: str | None = None,
    message_id: str | None = None,
    correlation_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
    content_type: str | None = JSON,
) -> str:
    """Publish raw bytes as any AMQP client could (a poison message, a foreign producer's).

    Args:
        type: the `type` property (a contract's wire name), or None for none.
        headers: the AMQP headers (default: ``{"version": 1}``, as a plain client sends).
        url, exchange, routing_key, message_id, correlation_id: as for `publish`.

    Returns:
        The message id.

    Raises:
        PublishFailed: as for `publish`.
    """
    message_id = message_id or new_message_id()
    properties = Basic.Properties(
        content_type=content_type,
        delivery_mode=PERSISTENT,
        message_id=message_id,
        correlation_id=correlation_id,
        message_type=type,
        timestamp=datetime.now(UTC),
        headers=dict(headers) if headers is not None else {h.VERSION: 1},
    )
    payload = body.encode() if isinstance(body, str) else body
    await _publish(url, payload, exchange, routing_key, properties)
    return message_id


async def _publish(
    url: str, body: bytes, exchange: str, routing_key: str, properties: Basic.Properties
) -> None:
    async with publishing_channel(url, name="fleet test publisher") as channel:
        await Publisher(channel).publish(
            body, exchange=exchange, routing_key=routing_key, properties=properties
        )


class Tap:
    """What a tap has seen, in order of arrival; `next` waits for the next match.

    Attributes:
        source: what it listens to (``exchange 'orders'``).
        received: every message so far.
    """

    def __init__(self, source: str):
        self.source = source
        self.received: list[Received] = []
        self._returned: set[int] = set()
        self._arrived = asyncio.Event()

    def add(self, message: Received) -> None:
        """Record a message that arrived."""
        self.received.append(message)
        self._arrived.set()

    async def next(self, event_type: type[E], *, timeout: float = DEFAULT_TIMEOUT) -> E:
        """The next event of this contract, decoded; messages of other types stay in
        `received` for a later call.

        Raises:
            AssertionError: none arrived within `timeout`; the message lists what did.
            InvalidPayload: one arrived, but its body does not decode as the contract.
        """
        __tracebackhide__ = True  # pytest: a failure points at the test's line
        message = await self.next_message(
            lambda m: m.carries(event_type), what=describe(event_type), timeout=timeout
        )
        return message.decode(event_type)

    async def next_message(
        self,
        match: Callable[[Received], bool] = lambda _: True,
        *,
        what: str = "a message",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Received:
        """The next message `match` accepts (each is returned once), waiting for it.

        Raises:
            AssertionError: none arrived within `timeout`.
        """
        __tracebackhide__ = True  # pytest: a failure points at the test's line
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(self.received):
                if i not in self._returned and match(message):
                    self._returned.add(i)
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(_nothing(what, self.source, timeout, self.received))
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)


def _nothing(what: str, source: str, timeout: float, seen: Sequence[Received]) -> str:
    listed = ", ".join(m.summary() for m in seen[:10]) + (", …" if len(seen) > 10 else "")
    saw = f"{len(seen)} other message(s): {listed}" if seen else "nothing"
    return f"timed out after {timeout:g}s waiting for {what} on {source}; it saw {saw}"


@contextlib.asynccontextmanager
async def tap(
    url: str,
    exchange: str,
    *binding_keys: str,
    arguments: Mapping[str, Any] | None = None,
) -> AsyncIterator[Tap]:
    """Listen to what `exchange` routes, taking nothing from any consumer.

    An exclusive queue of the tap's own is bound to the exchange (with each of
    `binding_keys`, ``#`` if none) before the block starts, and deleted when it ends.
    While it is bound, the exchange routes what it matches: a follow-on event that
    nothing else is bound for is then not returned as unroutable.

        async with tap(url, "inventory") as seen:
            await publish(url, OrderPlaced(...), exchange="orders")
            reserved = await seen.next(StockReserved)
    """
    connection = await connect(url, name=f"fleet test tap on {exchange}")
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        for key in binding_keys or ("#",):
            await queue.bind(exchange, key, arguments=dict(arguments) if arguments else None)
        seen = Tap(f"exchange {exchange!r}")

        async def on_message(message: AbstractIncomingMessage) -> None:
            seen.add(_received(message, Received))

        await queue.consume(on_message, no_ack=True)
        yield seen
    finally:
        await connection.close()


async def take(url: str, queue: str, event_type: type[E], *, timeout: float = DEFAULT_TIMEOUT) -> E:
    """Take messages off `queue` (one nobody consumes) until one of `event_type` arrives.

    Messages before it are taken too (a timeout lists them); those after it stay.

    Raises:
        AssertionError: none arrived within `timeout`.
        InvalidPayload: it arrived, but its body does not decode as the contract.
    """
    __tracebackhide__ = True  # pytest: a failure points at the test's line
    message = await _take_until(
        url, queue, lambda m: m.carries(event_type), describe(event_type), timeout, Received
    )
    return message.decode(event_type)


async def dead_lettered(
    url: str,
    queue: str,
    *,
    reason: str | None = None,
    message_id: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> DeadLetter:
    """The next message parked from `queue` (taken off ``<queue>.dead``), checked for `reason`.

    Args:
        queue: the work queue (``inventory``), not its dead-letter queue.
        reason: the ``x-fleet-reason`` it must have been parked with, if any
            (``decode``, ``retries-exhausted``, ``permanent`` …).
        message_id: wait for this message (others parked before it are taken too).
        timeout: how long to wait for it.

    Raises:
        AssertionError: nothing was parked within `timeout`, or it was parked for another
            reason (the message says which, and the error).
    """
    __tracebackhide__ = True  # pytest: a failure points at the test's line
    dead = dead_letter_queue(queue)
    what = f"message {message_id!r}" if message_id else "a parked message"
    parked = await _take_until(
        url,
        dead,
        lambda m: message_id is None or m.message_id == message_id,
        what,
        timeout,
        DeadLetter,
    )
    if reason is not None and parked.reason != reason:
        raise AssertionError(
            f"{dead}: {parked.message_id} was parked with reason {parked.reason!r} "
            f"({parked.error}), not {reason!r}"
        )
    return parked


async def _take_until(
    url: str,
    queue: str,
    match: Callable[[Received], bool],
    what: str,
    timeout: float,
    kind: type[R],
) -> R:
    """Consume `queue` one message at a time, acking each, until `match` accepts one.

    With a prefetch of one, a message that arrives after the match is never acked, so
    closing the connection leaves it in the queue.
    """
    __tracebackhide__ = True  # pytest: a failure points at the test's line
    seen: list[Received] = []
    found: asyncio.Future[R] = asyncio.get_running_loop().create_future()
    connection = await connect(url, name=f"fleet test reader of {queue}")
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1)
        source = await channel.get_queue(queue, ensure=False)

        async def on_message(message: AbstractIncomingMessage) -> None:
            if found.done():
                return  # left unacked: back in the queue when the connection closes
            await message.ack()
            received = _received(message, kind)
            if match(received):
                found.set_result(received)
            else:
                seen.append(received)

        await source.consume(on_message)
        try:
            return await asyncio.wait_for(asyncio.shield(found), timeout)
        except TimeoutError:
            raise AssertionError(_nothing(what, f"queue {queue!r}", timeout, seen)) from None
    finally:
        await connection.close()
