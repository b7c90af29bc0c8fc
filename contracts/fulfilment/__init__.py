"""The reference order-fulfilment saga's events, registered on import.

OrderPlaced ─▶ StockReserved | StockRejected ─▶ PaymentCaptured | PaymentDeclined
  ─▶ ShipmentScheduled ─▶ OrderConfirmed
compensation: PaymentDeclined ─▶ StockReleased ─▶ OrderCancelled
              StockRejected ─▶ OrderCancelled
              OrderDeadline (still pending) ─▶ OrderCancelled ─▶ StockReleased,
                  PaymentRefunded, ShipmentCancelled (whatever was held)
"""

from contracts.fulfilment.inventory import StockRejected, StockReleased, StockReserved
from contracts.fulfilment.orders import (
    DEADLINE,
    OUT_OF_STOCK,
    PAYMENT_DECLINED,
    OrderCancelled,
    OrderConfirmed,
    OrderDeadline,
    OrderLine,
    OrderPlaced,
)
from contracts.fulfilment.payments import PaymentCaptured, PaymentDeclined, PaymentRefunded
from contracts.fulfilment.shipping import ShipmentCancelled, ShipmentScheduled

__all__ = [
    # Events
    "OrderCancelled",
    "OrderConfirmed",
    "OrderDeadline",
    "OrderLine",
    "OrderPlaced",
    "PaymentCaptured",
    "PaymentDeclined",
    "PaymentRefunded",
    "ShipmentCancelled",
    "ShipmentScheduled",
    "StockRejected",
    "StockReleased",
    "StockReserved",
    # Why an order was cancelled
    "DEADLINE",
    "OUT_OF_STOCK",
    "PAYMENT_DECLINED",
]
