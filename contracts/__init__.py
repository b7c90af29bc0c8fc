"""What travels on the wire: event contracts, their registry and the JSON codec.

Imports nothing else from fleet.
"""

from contracts.codec import decode, decoder_for, derive_message_id, encode
from contracts.errors import ContractError, DuplicateContract, InvalidPayload, UnknownEventType
from contracts.event import Event, describe
from contracts.registry import Registry, default_registry, lookup, register
from contracts.schema import json_schema

__all__ = [
    # Contracts
    "Event",
    "describe",
    # Registry
    "Registry",
    "default_registry",
    "lookup",
    "register",
    # Codec
    "decode",
    "decoder_for",
    "derive_message_id",
    "encode",
    "json_schema",
    # Errors
    "ContractError",
    "DuplicateContract",
    "InvalidPayload",
    "UnknownEventType",
]
