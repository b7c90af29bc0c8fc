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


class Resources(msgspec.Struct, kw_only=True):
    """Everything one vhost holds, or should hold."""

    exchanges: list[ExchangeDecl] = []
    queues: list[QueueDecl] = []
    bindings: list[BindingDecl] = []
