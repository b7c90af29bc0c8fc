"""Stand-ins for the reference fleet's external systems: a payment gateway, a
carrier API and a webhook receiver, with failure injection, for the demo and the tests.

    fleet standins run --port 8765

    with serve(port=0) as standins:    # in process, on a free port
        standins.url                   # http://127.0.0.1:PORT
"""

from fulfilment.standins.receiver import Answer, WebhookReceiver
from fulfilment.standins.server import Faults, Standins, serve

__all__ = ["Answer", "Faults", "Standins", "WebhookReceiver", "serve"]
