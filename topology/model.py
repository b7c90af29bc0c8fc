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
    # Deliveries that arrive together share one inbox transaction, up to this
    # many (1: a transaction each). Within a batch, handlers using ctx.db run
    # one at a time and the batch commits with its slowest, so `auto` batches
    # (up to 64) only the deliveries of handlers that have not written through
    # ctx.db; once one does, its deliveries get a transaction each.
    commit_batch: Positive | Literal["auto"] = "auto"


#: The ingress's default body limit: 1 MiB.
DEFAULT_MAX_BODY = 1024 * 1024

IngressAuthType = Literal["bearer", "standard-webhooks", "github", "stripe"]


class IngressAuth(_Spec, frozen=True):
    """How an ingress route checks its callers: a bearer token, Standard Webhooks
    signatures, GitHub's X-Hub-Signature-256 or Stripe's Stripe-Signature.

    `secrets_env` names environment variables holding the valid secrets; any
    of them is accepted, so a secret can be rotated without downtime.
    """

    type: IngressAuthType
    secrets_env: Annotated[list[str], msgspec.Meta(min_length=1)]


class IngressReply(_Spec, frozen=True):
    """Synchronous mode: after publishing, wait for one of `events` carrying the
    request's correlation id on `exchange`, and answer with it (504 after `timeout`)."""

    events: Annotated[list[str], msgspec.Meta(min_length=1)]
    exchange: str
    timeout: Duration = Duration(10_000)


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
    # Addresses or CIDR blocks allowed to post (403 for others); empty: anyone.
    allow_ips: list[str] = []
    # How long a caller-given id (Idempotency-Key, webhook-id, X-GitHub-Delivery,
    # Stripe event id) is remembered: a repeat is answered, not published again.
    dedupe_window: Duration = Duration(86_400_000)
    reply: IngressReply | None = None


class Ingress(_Spec, frozen=True):
    """The HTTP ingress (`fleet ingress run`): path → route."""

    routes: dict[str, IngressRoute] = {}


#: Each worker process's Prometheus port by default; `fleet up` numbers up from it.
DEFAULT_METRICS_PORT = 9100


class Metrics(_Spec, frozen=True):
    """Each worker's Prometheus endpoint and how often it reports its queues' depths.

    `fleet up` gives its n-th worker process `port + n`; 0 turns the endpoint off.
    """

    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = DEFAULT_METRICS_PORT
    lag_interval: Duration = Duration(15_000)


#: Broker-delayed retries of a webhook delivery: 5 s … 1 h, six attempts in all.
DEFAULT_WEBHOOK_DELAYS = (5_000, 30_000, 120_000, 600_000, 3_600_000)


class WebhookEvent(_Spec, frozen=True):
    """A subscribed contract: its wire name and version, and where it is published
    when that is not the subscription's exchange or the contract's routing key."""

    contract: str
    version: Positive = 1
    exchange: str | None = None
    routing_key: str | None = None


class WebhookRetry(_Spec, frozen=True):
    """Broker-delayed redeliveries of a failed webhook: one attempt per delay, then
    the dead-letter queue. There are no in-process retries: the receiver gets time."""

    delays: list[Duration] = msgspec.field(
        default_factory=lambda: [Duration(ms) for ms in DEFAULT_WEBHOOK_DELAYS]
    )


class WebhookSubscription(_Spec, frozen=True):
    """Outbound webhooks: each event of `events` published to `exchange` is POSTed
    to `url`, signed per Standard Webhooks with the secrets of `secrets_env`.

    fleet derives the queue `webhook.<name>` (bound to the events' routing keys),
    its retry tiers and its dead-letter queue. Destinations on loopback, private
    or link-local addresses are refused unless `allow_private` is set or the
    host is listed in `allow_hosts`.
    """

    url: str
    exchange: str
    events: Annotated[list[str | WebhookEvent], msgspec.Meta(min_length=1)]
    # Environment variables holding `whsec_` secrets; every set one signs each
    # delivery (the first is the newest), so receivers can rotate.
    secrets_env: Annotated[list[str], msgspec.Meta(min_length=1)]
    # An environment variable that, when set, replaces `url` (per deployment).
    url_env: str | None = None
    timeout: Duration = Duration(10_000)
    retry: WebhookRetry = msgspec.field(default_factory=WebhookRetry)
    queue_type: Literal["quorum", "classic"] = "quorum"
    prefetch: Positive = 32
    concurrency: Positive = 8
    allow_private: bool = False
    allow_hosts: list[str] = []

    def subscribed(self) -> list[WebhookEvent]:
        """`events` with the plain names spelled out as version 1."""
        return [WebhookEvent(contract=e) if isinstance(e, str) else e for e in self.events]


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
    metrics: Metrics = msgspec.field(default_factory=Metrics)
    webhooks: dict[str, WebhookSubscription] = {}
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
