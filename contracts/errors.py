"""Errors raised while turning wire messages into contracts and back.

ContractError
├── UnknownEventType      (also LookupError)  no contract for a wire name and version
├── InvalidPayload        (also ValueError)   body is not JSON, or not the contract's shape
└── DuplicateContract     (also ValueError)   two types registered under one name and version
"""

from __future__ import annotations


class ContractError(Exception):
    """Base of every error raised by `contracts`."""


class UnknownEventType(ContractError, LookupError):
    """No contract is registered for a wire name (and version)."""

    def __init__(
        self, name: str | None, version: int | None = None, known: list[str] | None = None
    ):
        self.name = name
        self.version = version
        where = repr(name) if version is None else f"{name!r} version {version}"
        hint = f" (known: {', '.join(known)})" if known else ""
        super().__init__(f"unknown event type {where}{hint}")


class InvalidPayload(ContractError, ValueError):
    """A body that is not valid JSON or does not match its contract.

    `path` is the field in msgspec's syntax without the leading `$`
    (``lines[2].qty``), empty when the whole body is at fault.
    """

    def __init__(self, type_name: str, detail: str, path: str = ""):
        self.type_name = type_name
        self.detail = detail
        self.path = path
        where = f"{type_name}{'.' if path and not path.startswith('[') else ''}{path}"
        super().__init__(f"{where}: {detail}")


class DuplicateContract(ContractError, ValueError):
    """Two different types claim the same wire name and version."""
