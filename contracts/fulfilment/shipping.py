"""Shipping facts: a carrier accepted the parcel."""

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
