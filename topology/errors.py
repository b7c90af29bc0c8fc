"""Errors raised while reading, checking and applying a topology.

TopologyError
├── TopologyInvalid      (also ValueError)   the file has problems; all are listed
├── BrokerUnreachable    (also ConnectionError)  AMQP or management API cannot be reached
│   ├── BrokerRefused                        the login or TLS failed: retrying will not help
│   └── ManagementRefused                    the management API refused the user (401, 403)
├── MissingPassword      (also ValueError)   a broker user to create has no password
└── UnsafeChange                             a change RabbitMQ cannot make in place
"""

from __future__ import annotations

from collections.abc import Sequence

from topology.problems import Problem


class TopologyError(Exception):
    """Base of every error raised by `topology`."""


class TopologyInvalid(TopologyError, ValueError):
    """The topology file has one or more errors; `problems` lists every one."""

    def __init__(self, source: str, problems: Sequence[Problem]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(f"{source}: {count} problem{'s' if count != 1 else ''}\n{lines}")


class BrokerUnreachable(TopologyError, ConnectionError):
    """The broker or its management API did not answer."""


class BrokerRefused(BrokerUnreachable):
    """The broker will not let this process in: its login was refused, the TLS handshake
    failed (a CA that does not vouch for the broker, a missing client certificate), or
    a TLS file the URL names cannot be read. Trying again will not help, so processes
    stop instead of retrying."""


class ManagementRefused(BrokerUnreachable):
    """The management API refused the user: wrong credentials, or a tag it lacks."""


class MissingPassword(TopologyError, ValueError):
    """A broker user `apply` would create has no password in the environment or file."""


class UnsafeChange(TopologyError):
    """A change RabbitMQ cannot make in place (a queue's type or arguments)."""
