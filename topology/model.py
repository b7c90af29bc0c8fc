"""The topology file as typed Structs.

Every Struct forbids unknown fields, so a typo is an error rather than a
silently ignored setting. Defaults here are the documented defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from topology.duration import Duration

ExchangeType = Literal["topic", "direct", "fanout", "headers"]
QueueType = Literal["quorum", "classic", "stream"]
Positive = Annotated[int, msgspec.Meta(ge=1)]

#: Quorum queues of RabbitMQ 4.x drop a message past 20 deliveries unless told
#: otherwise; fleet always sets the limit explicitly and dead-letters past it.
DEFAULT_DELIVERY_LIMIT = 20


class _Spec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the file's Structs."""


class Exchange(_Spec, frozen=True):
    """An exchange events are published to."""

    type: ExchangeType = "topic"
    durable: bool = True
    arguments: dict[str, Any] = {}


class Binding(_Spec, frozen=True):
    """Routes messages from an exchange into the queue that lists it."""

    exchange: str
    routing_key: str = "#"
    arguments: dict[str, Any] = {}


class RetryPolicy(_Spec, frozen=True):
    """How a queue's consumers retry a transient failure.

    First `attempts` tries in process (exponential backoff from `backoff`,
    with jitter, capped at `max_backoff`); then one broker-delayed redelivery
    per entry of `delays`; then the dead-letter queue.
    """

    attempts: Positive = 3
    backoff: Duration = Duration(100)
    max_backoff: Duration = Duration(2000)
    delays: list[Duration] = msgspec.field(
        default_factory=lambda: [Duration(5000), Duration(30_000), Duration(300_000)]
    )


class Delay(_Spec, frozen=True):
    """A delay queue's rule: hold each message for `ttl`, then hand it to queue `then`.

    No worker consumes a delay queue: the broker expires each message after
    `ttl` and dead-letters it to `then` through the default exchange, so it
    reaches that queue only. Deadlines and reminders use it instead of polling.
    """

    ttl: Duration
    then: str


class Queue(_Spec, frozen=True):
    """A queue, its bindings and its failure routing.

    fleet derives `<name>.retry.<delay>` for each retry delay and `<name>.dead`
    for parked messages; they are never written by hand. A queue with `delay`
    is a delay queue instead: it gets neither (nothing consumes it).
    """

    type: QueueType = "quorum"
    durable: bool = True
    bind: list[Binding] = []
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    # Deliveries before a message that keeps coming back unsettled (one that
    # crashes its worker, say) is parked: RabbitMQ counts them on quorum
    # queues (x-delivery-limit); fleet's workers count them on classic ones.
    delivery_limit: Positive | None = None
    arguments: dict[str, Any] = {}
    # Makes this a delay queue: messages wait `delay.ttl`, then go to `delay.then`.
    delay: Delay | None = None


class WorkerSpec(_Spec, frozen=True):
    """A worker: the module holding its handlers and the queue it consumes."""

    module: str
    queue: str
    publish_to: str | None = None
    prefetch: Positive = 64
    concurrency: Positive = 16
    replicas: Positive = 1
    # Exception classes (dotted paths) that skip retries and park at once.
    permanent_errors: list[str] = []
    # Events this worker emits that may have no consumer (published without
    # `mandatory`); any other unrouted follow-on event is a failure.
    terminal: list[str] = []
    # Times a handler may start on one message without finishing (its process
    # died) before the message is parked as a crash loop. Counted per message
    # in the inbox database; see the README for workers without one.
    crash_limit: Positive = 5
    # How long a processed message id is remembered for deduplication
    # (PostgreSQL inbox); a redelivery older than this is processed again.
    inbox_retention: Duration = Duration(7 * 86_400_000)


#: The ingress's default body limit: 1 MiB.
DEFAULT_MAX_BODY = 1024 * 1024

IngressAuthType = Literal["bearer", "standard-webhooks", "github"]


class IngressAuth(_Spec, frozen=True):
    """How an ingress route checks its callers: a bearer token, Standard Webhooks
    signatures, or GitHub's X-Hub-Signature-256.

    `secrets_env` names environment variables holding the valid secrets; any
    of them is accepted, so a secret can be rotated without downtime.
    """

    type: IngressAuthType
    secrets_env: Annotated[list[str], msgspec.Meta(min_length=1)]


class IngressRoute(_Spec, frozen=True):
    """An HTTP path whose POSTed JSON becomes one event of `contract`."""

    contract: str
    exchange: str
    version: Positive = 1
    # Default: the contract's own routing key.
    routing_key: str | None = None
    auth: IngressAuth | None = None
    # Bytes; a larger body is refused with 413 before it is read.
    max_body: Positive = DEFAULT_MAX_BODY


class Ingress(_Spec, frozen=True):
    """The HTTP ingress (`fleet ingress run`): path → route."""

    routes: dict[str, IngressRoute] = {}


class Broker(_Spec, frozen=True):
    """The broker's nodes, and how quorum queues are spread over them.

    `urls` are used when neither ``--url`` nor FLEET_AMQP_URL is given; more
    than one names the nodes of a cluster, and clients fail over between them.
    A file with several URLs or with `quorum_replicas` is meant for a cluster:
    `topology check` then flags queues that a node's loss would lose.
    """

    urls: list[str] = []
    # x-quorum-initial-group-size of every quorum queue fleet declares; by
    # default RabbitMQ places a replica on every node (up to its own limit).
    quorum_replicas: Positive | None = None

    @property
    def clustered(self) -> bool:
        """Whether the file targets a cluster of several nodes."""
        return len(self.urls) > 1 or self.quorum_replicas is not None


class Topology(_Spec, frozen=True):
    """A whole topology file."""

    version: Literal[1] = 1
    exchanges: dict[str, Exchange] = {}
    queues: dict[str, Queue] = {}
    workers: dict[str, WorkerSpec] = {}
    ingress: Ingress = msgspec.field(default_factory=Ingress)
    broker: Broker = msgspec.field(default_factory=Broker)

    def worker(self, name: str) -> WorkerSpec:
        """The spec of one worker.

        Raises:
            KeyError: with the known names, if there is no such worker.
        """
        try:
            return self.workers[name]
        except KeyError:
            known = ", ".join(sorted(self.workers)) or "none"
            raise KeyError(f"no worker {name!r} in the topology (known: {known})") from None
