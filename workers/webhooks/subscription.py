"""A topology subscription resolved for running: secrets read, queues named, retry rules built."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from topology import RetryPolicy, Topology
from topology.model import WebhookSubscription
from topology.names import dead_letter_queue, retry_queue, webhook_queue
from workers.runtime.retry import RetryRules
from workers.standard_webhooks import InvalidSecret, webhook_key
from workers.webhooks.errors import DestinationRefused, WebhookConfigError


@dataclass(frozen=True)
class Subscription:
    """One subscription, ready to dispatch."""

    name: str
    url: str
    #: Every configured secret, newest first; each delivery is signed with all of them.
    secrets: tuple[str, ...]
    #: (wire name, version) of each subscribed contract.
    events: frozenset[tuple[str, int]]
    timeout: float
    rules: RetryRules
    prefetch: int
    concurrency: int
    allow_private: bool
    allow_hosts: tuple[str, ...]

    @property
    def queue(self) -> str:
        """The queue the dispatcher consumes: ``webhook.<name>``."""
        return webhook_queue(self.name)

    @property
    def queues(self) -> list[str]:
        """The queue, its retry tiers and its dead-letter queue."""
        tiers = [retry_queue(self.queue, delay) for delay in self.rules.policy.delays]
        return [self.queue, *tiers, dead_letter_queue(self.queue)]

    @property
    def attempts(self) -> int:
        """Deliveries tried at most: the first and one per retry delay."""
        return 1 + len(self.rules.policy.delays)


def resolve(
    topology: Topology, names: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> list[Subscription]:
    """The subscriptions called `names` (default: every one), secrets read from `environ`.

    Raises:
        WebhookConfigError: an unknown name, or a subscription none of whose
            secrets is set, or one with a secret that is not valid base64.
    """
    unknown = sorted(set(names) - set(topology.webhooks))
    if unknown:
        known = ", ".join(sorted(topology.webhooks)) or "none"
        raise WebhookConfigError(
            f"no webhook subscription {', '.join(map(repr, unknown))} in the topology "
            f"(known: {known})"
        )
    env = os.environ if environ is None else environ
    return [
        _resolve(name, spec, env)
        for name, spec in topology.webhooks.items()
        if not names or name in names
    ]


def _resolve(name: str, spec: WebhookSubscription, env: Mapping[str, str]) -> Subscription:
    where = f"webhooks.{name}.secrets_env"
    secrets = tuple(env[var] for var in spec.secrets_env if env.get(var))
    if not secrets:
        raise WebhookConfigError(
            f"{where}: none of the environment variables {', '.join(spec.secrets_env)} is set"
        )
    for secret in secrets:
        try:
            webhook_key(secret)
        except InvalidSecret as exc:
            raise WebhookConfigError(f"{where}: {exc}") from None
    policy = RetryPolicy(attempts=1, delays=spec.retry.delays)
    return Subscription(
        name=name,
        url=(env.get(spec.url_env) if spec.url_env else None) or spec.url,
        secrets=secrets,
        events=frozenset((e.contract, e.version) for e in spec.subscribed()),
        timeout=spec.timeout.seconds,
        # No in-process attempts: every retry waits in a delay queue.
        rules=RetryRules(webhook_queue(name), policy, (DestinationRefused,)),
        prefetch=spec.prefetch,
        concurrency=spec.concurrency,
        allow_private=spec.allow_private,
        allow_hosts=tuple(spec.allow_hosts),
    )
