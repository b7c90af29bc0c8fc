"""JSON Schema export for contracts."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.event import Event


def json_schema(event_type: type[Event]) -> dict[str, Any]:
    """A self-contained JSON Schema (2020-12) for one contract, with fleet's wire metadata."""
    schema: dict[str, Any] = msgspec.json.schema(event_type)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["x-fleet"] = {
        "type": event_type.__wire_name__,
        "version": event_type.__version__,
        "routing_key": event_type.__routing_key__,
    }
    return schema
