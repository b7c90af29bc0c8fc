"""What the broker should look like: the topology file, its checks, and the
plan and apply that make a live broker match it. Imports `contracts` only.

Reading and checking the file needs no network code; what talks to the broker
(`topology.apply`, `topology.live`, `topology.management`, `topology.record`)
is imported from its own module, so a worker process never loads the HTTP
client it does not use.
"""

from topology.check import (
    EventRoute,
    WorkerWiring,
    check_references,
    check_webhook_contracts,
    check_wiring,
)
from topology.duration import Duration
from topology.errors import BrokerUnreachable, TopologyError, TopologyInvalid, UnsafeChange
from topology.expand import expand
from topology.graph import mermaid
from topology.load import DEFAULT_FILE, load, loads
from topology.model import (
    Binding,
    Exchange,
    Queue,
    RetryPolicy,
    Topology,
    WebhookEvent,
    WebhookSubscription,
    WorkerSpec,
)
from topology.plan import Change, Plan, plan
from topology.problems import Problem
from topology.resources import BindingDecl, ExchangeDecl, QueueDecl, Resources

__all__ = [
    # Reading the file
    "DEFAULT_FILE",
    "load",
    "loads",
    # The model
    "Binding",
    "Duration",
    "Exchange",
    "Queue",
    "RetryPolicy",
    "Topology",
    "WebhookEvent",
    "WebhookSubscription",
    "WorkerSpec",
    # Checks
    "EventRoute",
    "Problem",
    "WorkerWiring",
    "check_references",
    "check_webhook_contracts",
    "check_wiring",
    # Broker objects
    "BindingDecl",
    "ExchangeDecl",
    "QueueDecl",
    "Resources",
    "expand",
    # Planning (pure; `topology.apply` carries a plan out)
    "Change",
    "Plan",
    "plan",
    # Drawing
    "mermaid",
    # Errors
    "BrokerUnreachable",
    "TopologyError",
    "TopologyInvalid",
    "UnsafeChange",
]
