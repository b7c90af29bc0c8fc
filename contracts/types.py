"""Field types that bound what a contract carries, so nothing is accepted that
the systems behind it cannot store.

A plain `int` in JSON has no size and a plain `str` may hold NUL: a body with
``"total_cents": 1e30`` or ``"customer_id": "a\\u0000b"`` decodes, is accepted
by the ingress, and then fails in PostgreSQL (bigint overflow, invalid byte
sequence) where retrying can never help. Annotating fields with these types
moves the refusal to the door: the ingress answers 400 with the field's path,
and a worker parks the message as a decode error at once.

    from contracts import Event, Identifier, NonNegativeInt64, Text

    class InvoiceIssued(Event, frozen=True, kw_only=True):
        __routing_key__ = "invoice.issued"

        invoice_id: Identifier
        amount_cents: NonNegativeInt64
        lines: Annotated[list[InvoiceLine], msgspec.Meta(max_length=500)]
        note: Text = ""

Constraints combine, as long as no two set the same bound: text without NUL
of at most 64 characters is ``Annotated[str, NO_NUL, msgspec.Meta(max_length=64)]``
(`Text` already sets a maximum length, so it cannot take another). JSON cannot
carry a lone UTF-16 surrogate past msgspec's decoder, so text is always valid
UTF-8 once decoded.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

#: The range of a signed 64-bit integer: PostgreSQL's bigint, Java's long, Go's int64.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: The range of a signed 32-bit integer: PostgreSQL's integer.
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

#: Characters in a `Text` by default: generous for prose, small enough for any row.
TEXT_MAX_LENGTH = 10_000
#: AMQP short strings (ids, routing keys) hold 255 bytes; ids stay inside that.
IDENTIFIER_MAX_LENGTH = 255

#: Text without NUL, which PostgreSQL's text, C strings and many protocols refuse.
NO_NUL = msgspec.Meta(pattern=r"^[^\x00]*$", description="text without NUL characters")

Int32 = Annotated[int, msgspec.Meta(ge=INT32_MIN, le=INT32_MAX)]
Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
NonNegativeInt64 = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
PositiveInt64 = Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX)]

#: Prose: no NUL, at most `TEXT_MAX_LENGTH` characters.
Text = Annotated[str, NO_NUL, msgspec.Meta(max_length=TEXT_MAX_LENGTH)]
#: An id or a name: 1 to 255 characters, no NUL.
Identifier = Annotated[str, NO_NUL, msgspec.Meta(min_length=1, max_length=IDENTIFIER_MAX_LENGTH)]
