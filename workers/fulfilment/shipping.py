"""shipping: books a carrier for paid orders."""

from __future__ import annotations

import uuid

from contracts.fulfilment import PaymentCaptured, ShipmentScheduled
from workers import Context, Worker

shipping = Worker("shipping")


@shipping.handles(PaymentCaptured)
async def schedule(event: PaymentCaptured, ctx: Context) -> ShipmentScheduled:
    """Book the shipment of a paid order."""
    shipment_id = uuid.uuid5(uuid.NAMESPACE_URL, f"shipment:{event.order_id}").hex
    return ShipmentScheduled(order_id=event.order_id, shipment_id=shipment_id, carrier="parcelco")
