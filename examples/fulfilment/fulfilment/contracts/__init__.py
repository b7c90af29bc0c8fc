"""The reference order-fulfilment saga's events, registered on import.

OrderPlaced ─▶ StockReserved | StockRejected ─▶ PaymentCaptured | PaymentDeclined
  ─▶ ShipmentScheduled ─▶ OrderConfirmed
compensation: PaymentDeclined ─▶ StockReleased ─▶ OrderCancelled
              StockRejected ─▶ OrderCancelled
              OrderDeadline (still pending) ─▶ OrderCancelled ─▶ StockReleased,
                  PaymentRefunded, ShipmentCancelled (whatever was held)
"""

from fulfilment.contracts.inventory import StockRejected, StockReleased, StockReserved
from fulfilment.contracts.orders import (
    DEADLINE,
    OUT_OF_STOCK,
    PAYMENT_DECLINED,
    UNPROCESSABLE,
    OrderCancelled,
    OrderConfirmed,
    OrderDeadline,
    OrderLine,
    OrderPlaced,
    OrderPlacedV1,
)
from fulfilment.contracts.payments import PaymentCaptured, PaymentDeclined, PaymentRefunded
from fulfilment.contracts.shipping import ShipmentCancelled, ShipmentScheduled

__all__ = [
    # Events
    "OrderCancelled",
    "OrderConfirmed",
    "OrderDeadline",
    "OrderLine",
    "OrderPlaced",
    "OrderPlacedV1",
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
    "UNPROCESSABLE",
]
