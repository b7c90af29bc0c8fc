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
    check_outbox_contracts,
    check_references,
    check_webhook_contracts,
    check_wiring,
)
from topology.duration import Duration
from topology.errors import (
    BrokerRefused,
    BrokerUnreachable,
    ManagementRefused,
    MissingPassword,
    TopologyError,
    TopologyInvalid,
    UnsafeChange,
)
from topology.expand import expand
from topology.graph import mermaid
from topology.load import PROJECT_FILE, TopologyNotFound, find_file, load, loads
from topology.model import (
    Access,
    Binding,
    Exchange,
    OutboxSpec,
    Queue,
    RetryPolicy,
    Topology,
    WebhookEvent,
    WebhookSubscription,
    WorkerSpec,
)
from topology.plan import Change, Plan, plan
from topology.problems import Problem
from topology.rate import Rate
from topology.resources import (
    BindingDecl,
    ExchangeDecl,
    Permissions,
    QueueDecl,
    Resources,
    TopicPermission,
    UserDecl,
)

__all__ = [
    # Reading the file
    "PROJECT_FILE",
    "TopologyNotFound",
    "find_file",
    "load",
    "loads",
    # The model
    "Access",
    "Binding",
    "Duration",
    "Rate",
    "Exchange",
    "OutboxSpec",
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
    "check_outbox_contracts",
    "check_webhook_contracts",
    "check_wiring",
    # Broker objects
    "BindingDecl",
    "ExchangeDecl",
    "Permissions",
    "QueueDecl",
    "Resources",
    "TopicPermission",
    "UserDecl",
    "expand",
    # Planning (pure; `topology.apply` carries a plan out)
    "Change",
    "Plan",
    "plan",
    # Drawing
    "mermaid",
    # Errors
    "BrokerRefused",
    "BrokerUnreachable",
    "ManagementRefused",
    "MissingPassword",
    "TopologyError",
    "TopologyInvalid",
    "UnsafeChange",
]
