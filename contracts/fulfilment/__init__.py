"""The reference order-fulfilment saga's events, registered on import."""

from contracts.fulfilment.inventory import StockRejected, StockReleased, StockReserved
from contracts.fulfilment.orders import (
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
)
from contracts.fulfilment.payments import PaymentCaptured, PaymentDeclined
from contracts.fulfilment.shipping import ShipmentScheduled

__all__ = [
    "OrderCancelled",
    "OrderConfirmed",
    "OrderLine",
    "OrderPlaced",
    "PaymentCaptured",
    "PaymentDeclined",
    "ShipmentScheduled",
    "StockRejected",
    "StockReleased",
    "StockReserved",
]
