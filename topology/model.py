"""The topology file as typed Structs.

Every Struct forbids unknown fields, so a typo is an error rather than a
silently ignored setting. Defaults here are the documented defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from topology.breaker import CircuitBreaker
from topology.duration import Duration
from topology.rate import Rate
from topology.size import ByteSize
from topology.stream_start import StreamStart

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


class StreamRetention(_Spec, frozen=True):
    """How much of a stream RabbitMQ keeps: whole segments older than `max_age`, or
    beyond `max_length_bytes` in all, are truncated (the newest segment never is)."""

    max_age: Duration | None = None
    max_length_bytes: ByteSize | None = None
    # Size of each segment file; retention removes whole segments, so it is the
    # granularity of max_age and max_length_bytes (RabbitMQ's default: 500 MB).
    segment_bytes: ByteSize | None = None


class PartitionKey(_Spec, frozen=True):
    """Where a super stream's publishers take the key that picks a partition: a field
    of the event's body, or a message header. Exactly one of the two."""

    field: str | None = None
    header: str | None = None


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
    # Streams only: retention (x-max-age, x-max-length-bytes, x-stream-max-segment-size-bytes).
    stream: StreamRetention | None = None
    # Streams only: a super stream of this many partitions, `<name>-0` … `<name>-N-1`,
    # behind a direct exchange `<name>` (binding keys "0" … "N-1"), as RabbitMQ's own
    # `rabbitmq-streams add_super_stream` makes it.
    partitions: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    # Super streams: where the key that picks the partition comes from (for the
    # publishers and consumers of later steps; the broker does not need it).
    key: PartitionKey | None = None


class RateLimit(_Spec, frozen=True):
    """A limit on how often a handler is called: `rate`, with up to `burst` at once
    after a pause (docs/concepts/flow-control.md)."""

    rate: Rate
    burst: Positive = 1


class WorkerSpec(_Spec, frozen=True):
    """A worker: the module holding its handlers and the queue it consumes."""

    module: str
    queue: str
    publish_to: str | None = None
    # An exchange where each message this worker parks is announced as a
    # Fault[<contract>] (routing key fault.<its routing key>), so the others
    # in a choreography can compensate; None announces nothing.
    faults: str | None = None
    prefetch: Positive = 64
    concurrency: Positive = 16
    replicas: Positive = 1
    # Exception classes (dotted paths) that skip retries and park at once.
    # PostgreSQL's errors for data it can never store (asyncpg's DataError
    # family, check and not-null violations) are permanent already.
    permanent_errors: list[str] = []
    # Exception classes retried although fleet deems them permanent (a check
    # constraint that later events can satisfy, say).
    transient_errors: list[str] = []
    # Events this worker emits that may have no consumer (published without
    # `mandatory`); any other unrouted follow-on event is a failure.
    terminal: list[str] = []
    # Times a handler may start on one message without finishing (its process
    # died) before the message is parked as a crash loop. Counted per message
    # in the inbox database; see docs/operations/failures.md for workers without one.
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
    # Without a database: message ids this process remembers for deduplication
    # (about 1.4 MiB per 10,000 ids of 32 characters); the follow-ons of the last 1,000 claims that
    # emitted any are kept for a replay.
    memory_inbox: Positive = 10_000
    # Handler calls per second of each of this worker's processes (`50/s`, `600/m`),
    # with up to `burst` at once after a pause; None: no limit. A delivery waiting
    # for its turn is held (unacked), not retried.
    rate: Rate | None = None
    burst: Positive = 1
    # Limits of single handlers, by the wire name of the contract they take
    # (`PaymentRequested: {rate: 10/s}`), on top of the worker's `rate`.
    handler_rates: dict[str, RateLimit] = {}
    # Stop consuming while a downstream is down: after `failures` transient
    # failures in a row, for `cool_down`, then probe with one message; None: no breaker.
    breaker: CircuitBreaker | None = None
    # Per-key order within each process: deliveries with the same key (a top-level
    # field of the event, `order_id`, or a header, `header:x-tenant`) are handled one
    # after another, different keys concurrently (docs/concepts/flow-control.md).
    order_by: str | None = None
    # Workers on a stream (docs/concepts/streams.md): where a consumer with no stored
    # offset starts (first, last, next, an offset, 2h back, an ISO time), and the
    # name its offsets are stored under (default: the worker's name). A new name
    # reads the stream again from `from`.
    start: StreamStart | None = msgspec.field(default=None, name="from")
    consumer: str | None = None


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
    # How long a request's id is remembered, so that a repeat is answered, not
    # published again: the Idempotency-Key (routes without a signature), or the
    # signed id (webhook-id, Stripe event id, digest of a GitHub delivery). GitHub
    # signs no timestamp: its deliveries are replay-proof for this long only.
    dedupe_window: Duration = Duration(86_400_000)
    reply: IngressReply | None = None
    # A body key the contract has no field for (at any depth): `reject` answers
    # 400 with its path; `ignore` drops it, for third-party webhooks whose bodies
    # carry more than the contract. A key repeated in one object is refused either way.
    unknown_fields: Literal["reject", "ignore"] = "reject"
    # When the caller gets its 202: `confirm`, once the broker confirmed the event;
    # `outbox`, once the event's row (and the request's id) committed in the
    # outbox's database, for the relay to publish: accepted while the broker is
    # down, the id remembered durably. Needs an `outbox:` section listing the
    # route's contract under its exchange.
    accept: Literal["confirm", "outbox"] = "confirm"


class IngressLimits(_Spec, frozen=True):
    """How long the ingress waits for each client, and how many it serves at once.

    A connection is cut (408, then closed) when its request head (request line
    and headers) has not arrived in full `head_timeout` after the connection
    opened, or after the head's first byte on a kept-alive connection; when it
    sends nothing for `idle_timeout` in the middle of a request; or when its
    body falls behind `body_timeout` plus one second per `min_body_rate`
    bytes received. An idle kept-alive connection is closed after
    `keepalive_timeout`. Past `max_connections` open connections, a new one
    is answered 503 and closed at once.
    """

    head_timeout: Duration = Duration(10_000)
    idle_timeout: Duration = Duration(5_000)
    body_timeout: Duration = Duration(10_000)
    # Bytes per second, on average over the body (after `body_timeout`'s head start).
    min_body_rate: Positive = 1024
    # Longer than a reverse proxy's upstream keep-alive (nginx: 60s), so that the
    # proxy, not the ingress, closes an idle connection and never races a request.
    keepalive_timeout: Duration = Duration(75_000)
    max_connections: Positive = 512


class Ingress(_Spec, frozen=True):
    """The HTTP ingress (`fleet ingress run`): path → route, and its client limits."""

    routes: dict[str, IngressRoute] = {}
    limits: IngressLimits = msgspec.field(default_factory=IngressLimits)


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


#: User names start with this unless `access.prefix` says otherwise: fleet-orders, fleet-ingress.
DEFAULT_USER_PREFIX = "fleet-"


class Access(_Spec, frozen=True):
    """Least privilege on the broker; off unless `users` is true.

    With `users`, `fleet topology apply` keeps one RabbitMQ user per process: one
    per worker (`<prefix><worker>`), one for the ingress (`<prefix>ingress`) and one
    for the webhook dispatcher (`<prefix>webhooks`), each allowed only what its
    process does on this vhost (see `topology.access`). Passwords never appear here:
    apply reads them from FLEET_PASSWORD_<USER> or a --passwords-file.
    """

    users: bool = False
    prefix: str = DEFAULT_USER_PREFIX
    # Give the workers' users RabbitMQ's `management` tag: their lag metrics then
    # include unacknowledged counts (the management API's). It grants no AMQP rights,
    # but lets the user read the vhost's queue list and statistics over HTTP.
    management: bool = False


#: A module path as Python imports it: ``shop.contracts``.
ModuleName = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
]


class ProcessSpec(_Spec, frozen=True):
    """A process `fleet up` also runs and supervises: a stand-in for an external
    system, a local tool. A command starting with ``fleet`` runs this fleet's own
    CLI (the same interpreter); `env` is added to its environment."""

    command: Annotated[list[str], msgspec.Meta(min_length=1)]
    env: dict[str, str] = {}


class SagaSpec(_Spec, frozen=True):
    """A business transaction of the choreography, for `fleet saga list`: the event
    that starts one, and the event(s) that end it, by the status each gives it."""

    starts: str
    ends: Annotated[dict[str, str | list[str]], msgspec.Meta(min_length=1)]

    def ending(self) -> dict[str, str]:
        """Wire name of each ending event → the status it gives the saga."""
        return {
            event: status
            for status, events in self.ends.items()
            for event in ([events] if isinstance(events, str) else events)
        }


class OutboxSpec(_Spec, frozen=True):
    """The transactional outbox's relay: `fleet outbox run`, and a process of `fleet up`.

    Producers record events with `workers.outbox.Outbox` in their own database
    transactions; the relay publishes the committed rows, confirmed, in commit
    order per key. `publishes` names, per exchange, the contracts producers record
    for it: under `access.users` the relay's broker user may publish only those,
    and `topology check` follows them to their consumers like a worker's events.
    """

    publishes: Annotated[dict[str, list[str]], msgspec.Meta(min_length=1)]
    # In logs, metrics (the `outbox` label) and the relay's connection names.
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$")] = "default"
    # The environment variable holding the producers' database URL (where fleet_outbox is).
    database_env: str = "FLEET_DATABASE_URL"
    # Rows fetched and published per round.
    batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    # The longest the relay sleeps without a commit's NOTIFY; how often a standby
    # relay tries to take over.
    poll: Duration = Duration(5_000)
    # How long sent rows are kept (for inspection) before the relay prunes them.
    retention: Duration = Duration(86_400_000)


class Topology(_Spec, frozen=True):
    """A whole topology file."""

    version: Literal[1] = 1
    # Modules whose Event classes are this fleet's contracts (what `publish`, the
    # ingress and `contracts list` know); empty: those the workers' handlers use.
    contracts: list[ModuleName] = []
    exchanges: dict[str, Exchange] = {}
    queues: dict[str, Queue] = {}
    workers: dict[str, WorkerSpec] = {}
    ingress: Ingress = msgspec.field(default_factory=Ingress)
    metrics: Metrics = msgspec.field(default_factory=Metrics)
    webhooks: dict[str, WebhookSubscription] = {}
    broker: Broker = msgspec.field(default_factory=Broker)
    access: Access = msgspec.field(default_factory=Access)
    processes: dict[str, ProcessSpec] = {}
    sagas: dict[str, SagaSpec] = {}
    outbox: OutboxSpec | None = None

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
