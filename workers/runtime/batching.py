"""Gathering a batch handler's deliveries (`Worker.handles_batch`).

    a delivery of a batch type joins the batch being formed (no slot held)
    ─▶ the batch is full (`max_size`), or `max_wait` passed since its first ─▶ it runs once
    ─▶ each member learns whether the run settled it (True: ack it) or not
       (False: it takes the single-message path, a one-element call of its own)

A gatherer only gathers and hands the batch to `run` (`handling.HandlerStage`
runs it under one consumer slot); every member keeps its own task in the
consumer, so its settling and ack go exactly as for any delivery
(`acks.AckBatcher` never acks past an unfinished one). At most prefetch /
max_size batches are in flight at once: their members are unacked until done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from topology.model import WorkerSpec
from topology.problems import Problem
from workers.context import Context
from workers.runtime.delivery import Delivery
from workers.worker import Worker

T = TypeVar("T")


class Member:
    """One delivery in a batch: its event, its context, and the answer it waits for."""

    __slots__ = ("ctx", "delivery", "done", "event")

    def __init__(self, event: Any, ctx: Context, delivery: Delivery, done: asyncio.Future[bool]):
        self.event = event
        self.ctx = ctx
        self.delivery = delivery
        self.done = done


Run = Callable[[list[Member]], Awaitable[bool]]


class Gatherer(Generic[T]):
    """Forms the batches of one batch handler and runs each once.

    Args:
        max_size: members per batch at most; a full batch runs at once.
        max_wait: seconds from a batch's first member until it runs unfilled.
        run: runs a batch; True when it settled every member, False when each must
            take the single path. An error it raises counts as False.
    """

    def __init__(self, max_size: int, max_wait: float, run: Run):
        self.max_size = max_size
        self.max_wait = max_wait
        self._run = run
        self._forming: list[Member] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def join(self, event: Any, ctx: Context, delivery: Delivery) -> bool:
        """Wait for the batch this delivery joins to run: True when the batch settled it."""
        loop = asyncio.get_running_loop()
        member = Member(event, ctx, delivery, loop.create_future())
        forming = self._forming
        forming.append(member)
        if len(forming) >= self.max_size:
            self._start()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait, self._start)
        return await member.done

    @property
    def forming(self) -> int:
        """Members of the batch not yet started."""
        return len(self._forming)

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        members, self._forming = self._forming, []
        if members:
            task = asyncio.get_running_loop().create_task(self._settle(members))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _settle(self, members: list[Member]) -> None:
        settled = False
        try:
            settled = await self._run(members)
        except Exception:  # the run logs its own; the members go one by one
            settled = False
        finally:
            for member in members:
                if not member.done.done():
                    member.done.set_result(settled)


def batch_problems(
    name: str, spec: WorkerSpec, worker: Worker, prefetch: int | None = None
) -> list[Problem]:
    """What stops worker `name`'s batch handlers from working with its settings, one
    problem each: a prefetch below a max_size (the batch could never fill: fleet does
    not raise it behind the file's back), or a `handler_rates` entry for a batch type
    (a handler limit paces single calls). `prefetch` is the one in force (the CLI's
    --prefetch), else the file's."""
    problems: list[Problem] = []
    prefetch = prefetch or spec.prefetch
    for handler in worker.batches:
        assert handler.batch is not None
        wire_name = handler.event_type.__wire_name__
        if prefetch < handler.batch.max_size:
            problems.append(
                Problem(
                    f"workers.{name}.prefetch",
                    f"{prefetch} is below max_size {handler.batch.max_size} of the batch handler "
                    f"for {wire_name}: a batch could never fill; set prefetch to at least "
                    f"{handler.batch.max_size}",
                )
            )
        if wire_name in spec.handler_rates:
            problems.append(
                Problem(
                    f"workers.{name}.handler_rates.{wire_name}",
                    f"{wire_name} has a batch handler, and handler_rates pace single calls: "
                    "limit the worker's rate instead (it counts each message)",
                )
            )
    return problems
