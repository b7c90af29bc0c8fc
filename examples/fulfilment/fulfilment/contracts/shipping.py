"""Shipping facts: a carrier accepted the parcel, or the booking was cancelled."""

from __future__ import annotations

from contracts.event import Event
from contracts.registry import register
from contracts.types import Identifier, Text


@register
class ShipmentScheduled(Event, frozen=True, kw_only=True):
    """A carrier booked the shipment for a paid order."""

    __routing_key__ = "shipment.scheduled"

    order_id: Identifier
    shipment_id: Identifier
    carrier: Identifier


@register
class ShipmentCancelled(Event, frozen=True, kw_only=True):
    """The carrier booking of a cancelled order was called off."""

    __routing_key__ = "shipment.cancelled"

    order_id: Identifier
    shipment_id: Identifier
    reason: Text
