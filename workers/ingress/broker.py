"""The ingress's broker connection: `workers.runtime.link.BrokerLink`, kept up
in the background, failing over between nodes, publishing with confirms.

The ingress answers 503 (`BrokerDown`) only while no node is reachable, or when
none confirmed an event within the link's failover timeout.
"""

from __future__ import annotations

from workers.runtime.link import BrokerDown, BrokerLink

__all__ = ["BrokerDown", "BrokerLink"]
