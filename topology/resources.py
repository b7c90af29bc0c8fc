"""Broker objects as plan and apply compare them: what the file expands to, and
what the management API reports, in one shape."""

from __future__ import annotations

from typing import Any

import msgspec


class ExchangeDecl(msgspec.Struct, frozen=True, kw_only=True):
    """An exchange on the broker."""

    name: str
    type: str
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    arguments: dict[str, Any] = {}

    @property
    def key(self) -> str:
        return f"exchange {self.name}"


class QueueDecl(msgspec.Struct, frozen=True, kw_only=True):
    """A queue on the broker; `arguments` never holds x-queue-type (that is `type`)."""

    name: str
    type: str
    durable: bool = True
    arguments: dict[str, Any] = {}

    @property
    def key(self) -> str:
        return f"queue {self.name}"


class BindingDecl(msgspec.Struct, frozen=True, kw_only=True):
    """A binding from an exchange to a queue."""

    source: str
    destination: str
    routing_key: str
    arguments: dict[str, Any] = {}

    @property
    def key(self) -> str:
        args = f" {self.arguments}" if self.arguments else ""
        return f"binding {self.source} → {self.destination} [{self.routing_key}]{args}"


class Permissions(msgspec.Struct, frozen=True, kw_only=True):
    """A user's permissions on one vhost: a regular expression each, matched against the
    names of exchanges and queues ('' allows nothing)."""

    configure: str = ""
    write: str = ""
    read: str = ""


class TopicPermission(msgspec.Struct, frozen=True, kw_only=True):
    """Which routing keys a user may publish (`write`) or bind (`read`) on one topic exchange."""

    exchange: str
    write: str = ""
    read: str = ""


class UserDecl(msgspec.Struct, frozen=True, kw_only=True):
    """A broker user and what it may do on the vhost.

    `process` says whose it is (``worker orders``), for people; `permissions` is None
    for a user without any on the vhost. `password_hash` and `hashing_algorithm` are
    read from the broker only, so that plan can check a password; what the file
    expands to never has them, and neither does the record.
    """

    name: str
    process: str = ""
    tags: list[str] = []
    permissions: Permissions | None = None
    topics: list[TopicPermission] = []
    password_hash: str = ""
    hashing_algorithm: str = ""

    @property
    def key(self) -> str:
        return f"user {self.name}"


class Resources(msgspec.Struct, kw_only=True):
    """Everything one vhost holds, or should hold; `users` only under `access.users`."""

    exchanges: list[ExchangeDecl] = []
    queues: list[QueueDecl] = []
    bindings: list[BindingDecl] = []
    users: list[UserDecl] = []
