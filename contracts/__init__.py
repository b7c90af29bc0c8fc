"""What travels on the wire: event contracts, their registry and the JSON codec.

Imports nothing else from fleet.
"""

from contracts.codec import decode, decoder_for, derive_message_id, encode
from contracts.errors import ContractError, DuplicateContract, InvalidPayload, UnknownEventType
from contracts.event import Event, describe
from contracts.evolution import Evolution, default_evolution, downcaster, upcaster
from contracts.faults import Fault
from contracts.registry import Registry, default_registry, lookup, register
from contracts.schema import json_schema
from contracts.strict import decode_strict
from contracts.types import (
    INT64_MAX,
    INT64_MIN,
    NO_NUL,
    Identifier,
    Int32,
    Int64,
    NonNegativeInt64,
    PositiveInt64,
    Text,
)

__all__ = [
    # Contracts
    "Event",
    "Fault",
    "describe",
    # Bounded field types
    "INT64_MAX",
    "INT64_MIN",
    "NO_NUL",
    "Identifier",
    "Int32",
    "Int64",
    "NonNegativeInt64",
    "PositiveInt64",
    "Text",
    # Evolution
    "Evolution",
    "default_evolution",
    "downcaster",
    "upcaster",
    # Registry
    "Registry",
    "default_registry",
    "lookup",
    "register",
    # Codec
    "decode",
    "decode_strict",
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
