"""Settings a topology file can hold that RabbitMQ versions treat differently.

fleet runs on RabbitMQ 3.10 and later (tested on 3.10.8 and 4.0.5). `topology check`
warns about each setting below that some version ignores, deprecates or refuses,
naming the versions; told which version the fleet runs on (``--rabbitmq-version
4.0``), it warns only about what matters there.

    setting                          what differs, from which version
    classic ``durable: false``       transient non-exclusive queues: deprecated in 4.0,
                                     refused by default from 4.3
    x-queue-mode                     no effect from 3.12 (classic queues v2 keep little in
                                     memory anyway); refused from 4.3
    x-queue-version: 1               classic queue storage v1 is gone in 4.0 (v2 is used);
                                     refused from 4.3
    x-queue-master-locator           deprecated in 4.0 for x-queue-leader-locator
    x-queue-leader-locator, classic  accepted from 4.0; 3.x refuses the declaration
    x-ha-*                           classic mirroring, set only ever by policy (never by
                                     these arguments), is gone in 4.0: no effect anywhere
    ``delivery_limit``, quorum       up to 4.2 every return of a message counts toward it;
                                     4.3 counts failed deliveries only (basic.reject, a
                                     consumer gone), not basic.nack nor a consumer timeout
    ingress ``max_body`` > 16 MiB    4.0 refuses larger messages by default
                                     (max_message_size; 3.x: 128 MiB)

What fleet itself relies on: none of these. It declares durable queues with an
explicit type, x-delivery-limit and dead-letter target; its prefetch is per
consumer (4.0 deprecates global QoS, 4.3 refuses it); it settles a failure by
publishing a copy with a confirm and acking the original, never by a requeueing
nack (bar a copy the broker would not confirm, handed back to be tried again,
which 4.3 rightly no longer counts), and with a database it counts a crash loop's
starts itself (`crash_limit`). A quorum queue's `delivery_limit` is the crash bound
only for a worker without a database, which is where 4.3's counting matters.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from topology.model import Queue, Topology
from topology.problems import Problem

#: The oldest RabbitMQ fleet runs on.
OLDEST = (3, 10)
#: RabbitMQ 4.0's default max_message_size (3.x: 128 MiB).
MAX_MESSAGE_SIZE_4_0 = 16 * 1024 * 1024


class Version(NamedTuple):
    """A RabbitMQ release series: ``Version(4, 0)``."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


def parse_version(text: str) -> Version:
    """``"4.0"``, ``"4.0.5"`` or ``"3.10.8"`` → the release series.

    Raises:
        ValueError: not a version, or one older than fleet supports.
    """
    match = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.\d+)*\s*", text)
    if match is None:
        raise ValueError(f"expected a RabbitMQ version like 4.0 or 3.10.8, got {text!r}")
    version = Version(int(match[1]), int(match[2]))
    if version < OLDEST:
        raise ValueError(f"fleet runs on RabbitMQ {Version(*OLDEST)} and later, not {version}")
    return version


def version_problems(topology: Topology, rabbitmq: Version | None = None) -> list[Problem]:
    """Warnings about settings of `topology` that RabbitMQ versions treat differently.

    Args:
        topology: the file.
        rabbitmq: the version the fleet runs on; None warns about every difference
            between the versions fleet supports, each naming its versions.
    """
    problems: list[Problem] = []
    consumed = {worker.queue for worker in topology.workers.values()}
    for name, queue in topology.queues.items():
        path = f"queues.{name}"
        if queue.type == "classic" and not queue.durable and _matters(rabbitmq, since=(4, 0)):
            problems.append(
                Problem(
                    f"{path}.durable",
                    "a transient (non-durable) classic queue: RabbitMQ 4.0 deprecates "
                    "transient non-exclusive queues and 4.3 refuses them by default; make it "
                    "durable",
                    "warning",
                )
            )
        problems += _argument_problems(path, queue, rabbitmq)
        if (
            queue.type == "quorum"
            and queue.delivery_limit is not None
            and name in consumed
            and _matters(rabbitmq, since=(4, 3))
        ):
            problems.append(
                Problem(
                    f"{path}.delivery_limit",
                    "bounds a crash loop only for workers without a database (with one, "
                    "fleet parks it at the worker's crash_limit); up to RabbitMQ 4.2 every "
                    "return counts toward it, 4.3 counts only failed deliveries (a consumer "
                    "gone, basic.reject), not basic.nack nor a consumer timeout: a handler "
                    "that hangs past the consumer timeout comes back forever",
                    "warning",
                )
            )
    for route_path, route in topology.ingress.routes.items():
        if route.max_body > MAX_MESSAGE_SIZE_4_0 and _matters(rabbitmq, since=(4, 0)):
            problems.append(
                Problem(
                    f"ingress.routes.{route_path}.max_body",
                    f"{route.max_body} bytes: RabbitMQ 4.0 refuses messages over 16 MiB by "
                    "default (max_message_size; 3.x: 128 MiB), so such a body would be "
                    "accepted here and refused by the broker",
                    "warning",
                )
            )
    return problems


def _matters(
    rabbitmq: Version | None,
    *,
    since: tuple[int, int] | None = None,
    before: tuple[int, int] | None = None,
) -> bool:
    """Whether a difference that shows from `since` (or up to `before`) matters on
    `rabbitmq`; on an unknown version every difference does."""
    if rabbitmq is None:
        return True
    return (since is None or rabbitmq >= since) and (before is None or rabbitmq < before)


def _argument_problems(path: str, queue: Queue, rabbitmq: Version | None) -> list[Problem]:
    """The queue's own `arguments` that some RabbitMQ version treats differently."""
    problems: list[Problem] = []
    arguments = queue.arguments

    def warn(key: str, message: str) -> None:
        problems.append(Problem(f"{path}.arguments.{key}", message, "warning"))

    if "x-queue-mode" in arguments and _matters(rabbitmq, since=(3, 12)):
        warn(
            "x-queue-mode",
            "has no effect from RabbitMQ 3.12 (classic queues v2 keep little in memory "
            "anyway) and 4.3 refuses it: remove it",
        )
    if arguments.get("x-queue-version") == 1 and _matters(rabbitmq, since=(4, 0)):
        warn(
            "x-queue-version",
            "classic queue storage v1 is gone in RabbitMQ 4.0 (the queue gets v2) and 4.3 "
            "refuses version 1: remove it",
        )
    if "x-queue-master-locator" in arguments and _matters(rabbitmq, since=(4, 0)):
        warn(
            "x-queue-master-locator",
            "deprecated in RabbitMQ 4.0: use x-queue-leader-locator (client-local or "
            "balanced), which classic queues accept from 4.0",
        )
    if (
        "x-queue-leader-locator" in arguments
        and queue.type == "classic"
        and _matters(rabbitmq, before=(4, 0))
    ):
        warn(
            "x-queue-leader-locator",
            "classic queues accept it from RabbitMQ 4.0; 3.x refuses the declaration "
            "(there, x-queue-master-locator)",
        )
    for key in sorted(k for k in arguments if k.startswith("x-ha-")):
        warn(
            key,
            "classic queue mirroring was set by policy only, never by queue arguments, and "
            "RabbitMQ 4.0 removed it: this does nothing; a quorum queue replicates",
        )
    return problems
