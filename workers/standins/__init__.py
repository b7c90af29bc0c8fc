"""Stand-ins for the reference fleet's external systems: a payment gateway and a
carrier API, with failure injection, for the demo and the tests.

    fleet standins run --port 8765

    with serve(port=0) as standins:    # in process, on a free port
        standins.url                   # http://127.0.0.1:PORT
"""

from workers.standins.server import Faults, Standins, serve

__all__ = ["Faults", "Standins", "serve"]
