"""The reference fleet's workers: an order-fulfilment saga by choreography.

Each module is one worker with its own tables in PostgreSQL, created when it
starts; `examples/fulfilment/fleet.yaml` wires them together. payments and shipping call
external systems over HTTP (`clients.py`; `fleet standins run` serves
stand-ins for both).
"""
