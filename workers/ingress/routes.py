"""The topology's ingress routes resolved for serving: contract types and secrets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from contracts import Event, Registry, UnknownEventType
from contracts.strict import UnknownFields
from topology import Topology
from topology.model import IngressAuthType
from workers.ingress.auth import (
    MissingSecret,
    Network,
    parse_networks,
    secrets_from_env,
    webhook_key,
)


class IngressConfigError(Exception):
    """A route cannot be served: unknown contract, or its secrets are not set."""


@dataclass(frozen=True)
class Reply:
    """Synchronous mode of a route: the events that answer it, and how long to wait."""

    exchange: str
    #: Wire names (the `type` property) of the answering events.
    types: frozenset[str]
    routing_keys: tuple[str, ...]
    timeout: float


@dataclass(frozen=True)
class Route:
    """One path, ready to serve."""

    path: str
    event_type: type[Event]
    exchange: str
    routing_key: str
    max_body: int
    auth: IngressAuthType | None = None
    secrets: tuple[str, ...] = ()
    #: Empty: any caller.
    networks: tuple[Network, ...] = ()
    #: Seconds a repeatable request's id is remembered.
    dedupe_window: float = 86_400.0
    reply: Reply | None = None
    #: A body key the contract has no field for: refused (400) or dropped.
    unknown_fields: UnknownFields = "reject"
    #: 202 after the broker's confirm, or after the outbox row committed.
    accept: Literal["confirm", "outbox"] = "confirm"


def resolve_routes(
    topology: Topology, registry: Registry, environ: Mapping[str, str] | None = None
) -> dict[str, Route]:
    """Every ingress route of `topology` with its contract type and secrets.

    Raises:
        IngressConfigError: naming the route's path, for the first route that
            cannot be served.
    """
    routes: dict[str, Route] = {}
    for path, spec in topology.ingress.routes.items():
        where = f"ingress.routes.{path}"
        try:
            event_type = registry.lookup(spec.contract, spec.version)
        except UnknownEventType as exc:
            raise IngressConfigError(f"{where}.contract: {exc}") from None
        secrets: tuple[str, ...] = ()
        if spec.auth is not None:
            try:
                secrets = tuple(secrets_from_env(spec.auth, environ))
                if spec.auth.type == "standard-webhooks":
                    for secret in secrets:
                        webhook_key(secret)
            except MissingSecret as exc:
                raise IngressConfigError(f"{where}.auth: {exc}") from None
        try:
            networks = parse_networks(spec.allow_ips)
        except ValueError as exc:
            raise IngressConfigError(f"{where}.allow_ips: {exc}") from None
        reply: Reply | None = None
        if spec.reply is not None:
            answers: list[type[Event]] = []
            for name in spec.reply.events:
                try:
                    answers.append(registry.lookup(name))
                except UnknownEventType as exc:
                    raise IngressConfigError(f"{where}.reply.events: {exc}") from None
            reply = Reply(
                exchange=spec.reply.exchange,
                types=frozenset(t.__wire_name__ for t in answers),
                routing_keys=tuple(sorted({t.__routing_key__ for t in answers})),
                timeout=spec.reply.timeout.ms / 1000,
            )
        routes[path] = Route(
            path=path,
            event_type=event_type,
            exchange=spec.exchange,
            routing_key=spec.routing_key or event_type.__routing_key__,
            max_body=spec.max_body,
            auth=spec.auth.type if spec.auth is not None else None,
            secrets=secrets,
            networks=networks,
            dedupe_window=spec.dedupe_window.ms / 1000,
            reply=reply,
            unknown_fields=spec.unknown_fields,
            accept=spec.accept,
        )
    return routes
