"""Shipping facts: a carrier accepted the parcel, or the booking was cancelled."""

from __future__ import annotations

from contracts.event import Event
from contracts.registry import register


@register
class ShipmentScheduled(Event, frozen=True, kw_only=True):
    """A carrier booked the shipment for a paid order."""

    __routing_key__ = "shipment.scheduled"

    order_id: str
    shipment_id: str
    carrier: str


@register
class ShipmentCancelled(Event, frozen=True, kw_only=True):
    """The carrier booking of a cancelled order was called off."""

    __routing_key__ = "shipment.cancelled"

    order_id: str
    shipment_id: str
    reason: str
