"""Body bytes ⇄ Event, with errors that name the field at fault.

The wire body is the event's fields as a UTF-8 JSON object, no envelope.
Decoders are built once per type and cached: building one costs far more than
decoding a message.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from typing import TypeVar

import msgspec

from contracts.errors import InvalidPayload
from contracts.event import Event

E = TypeVar("E", bound=Event)

_encoder = msgspec.json.Encoder()
# msgspec ends a validation message with " - at `$.lines[2].qty`".
_AT_PATH = re.compile(r"^(?P<detail>.*?) - at `\$(?P<path>[^`]*)`$")
_BACKTICKS = re.compile(r"`([^`]*)`")


@cache
def decoder_for(event_type: type[E]) -> msgspec.json.Decoder[E]:
    """The cached JSON decoder for one contract type."""
    return msgspec.json.Decoder(event_type)


def decode(event_type: type[E], body: bytes | str) -> E:
    """Decode a body into exactly `event_type`.

    Raises:
        InvalidPayload: the body is not JSON, or a field is missing or mistyped;
            the message reads like ``OrderPlaced.lines[2].qty: expected int, got str``.
            JSON nested past msgspec's depth limit is an InvalidPayload too.
    """
    try:
        event: E = decoder_for(event_type).decode(body)
        return event
    except msgspec.ValidationError as exc:
        raise invalid_payload(event_type.__wire_name__, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidPayload(event_type.__wire_name__, f"malformed JSON ({exc})") from None
    except RecursionError:
        # msgspec refuses JSON nested past its depth limit (about 1,000 levels),
        # however small the body: the data can never decode, so it is the
        # payload's fault, not a transient one.
        raise InvalidPayload(event_type.__wire_name__, "JSON nested too deeply") from None


def invalid_payload(type_name: str, msgspec_message: str) -> InvalidPayload:
    """Turn msgspec's ``Expected `int`, got `str` - at `$.a[2].b` `` into an InvalidPayload."""
    match = _AT_PATH.match(msgspec_message)
    detail, path = (match["detail"], match["path"].lstrip(".")) if match else (msgspec_message, "")
    detail = _BACKTICKS.sub(r"\1", detail)
    return InvalidPayload(type_name, detail[:1].lower() + detail[1:], path)


def encode(event: Event) -> bytes:
    """The wire body of an event: its fields as compact JSON."""
    return _encoder.encode(event)


def derive_message_id(type_name: str, body: bytes) -> str:
    """A stable id for a message its publisher sent without one.

    The same type and body always give the same id, so a redelivery (or a
    client's blind re-publish of the same fact) dedupes like any other.
    """
    digest = hashlib.blake2b(type_name.encode() + b"\x00" + body, digest_size=16)
    return "d-" + digest.hexdigest()
