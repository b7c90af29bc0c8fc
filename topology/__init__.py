"""What the broker should look like: the topology file, its checks, and the
plan and apply that make a live broker match it. Imports `contracts` only."""

from topology.apply import ApplyResult, apply, survey
from topology.check import EventRoute, WorkerWiring, check_references, check_wiring
from topology.duration import Duration
from topology.errors import BrokerUnreachable, TopologyError, TopologyInvalid, UnsafeChange
from topology.expand import expand
from topology.graph import mermaid
from topology.live import read_live
from topology.load import DEFAULT_FILE, load, loads
from topology.management import Management, management_url_from, vhost_from
from topology.model import Binding, Exchange, Queue, RetryPolicy, Topology, WorkerSpec
from topology.plan import Change, Plan, plan
from topology.problems import Problem
from topology.record import Record, read_record
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
    "WorkerSpec",
    # Checks
    "EventRoute",
    "Problem",
    "WorkerWiring",
    "check_references",
    "check_wiring",
    # Broker objects
    "BindingDecl",
    "ExchangeDecl",
    "QueueDecl",
    "Resources",
    "expand",
    # The live broker
    "Management",
    "management_url_from",
    "read_live",
    "vhost_from",
    # Plan and apply
    "ApplyResult",
    "Change",
    "Plan",
    "Record",
    "apply",
    "plan",
    "read_record",
    "survey",
    # Drawing
    "mermaid",
    # Errors
    "BrokerUnreachable",
    "TopologyError",
    "TopologyInvalid",
    "UnsafeChange",
]
