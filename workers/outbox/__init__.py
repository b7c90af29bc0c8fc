"""The transactional outbox: producers record events in their own transaction,
the relay (`fleet outbox run`) publishes what committed.

    from workers.outbox import Outbox

    outbox = Outbox(exchange="orders", app_id="shop")
    async with connection.transaction():
        await connection.execute("INSERT INTO orders ...")
        await outbox.add(connection, OrderPlaced(...), key=order_id)

`Relay` lives in `workers.outbox.relay` (it needs the broker client; producers don't).
"""

from workers.outbox.producer import Outbox, OutboxError, OutboxMessage
from workers.outbox.schema import SCHEMA, install

__all__ = ["SCHEMA", "Outbox", "OutboxError", "OutboxMessage", "install"]
