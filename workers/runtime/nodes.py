"""Which broker node to try next: the nodes of a cluster, in turn.

A process keeps to the node it is connected to; once that connection is lost,
it starts from the next node, so it does not keep knocking at one that just
died, and comes back round to it later.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from topology.nodes import DEFAULT_AMQP_PORT, DEFAULT_AMQPS_PORT, split_urls


class NodeRing:
    """The broker nodes one process may connect to, in the order to try them.

    Args:
        urls: one AMQP URL or several, comma-separated (every node of one cluster).
    """

    def __init__(self, urls: str):
        self.urls = split_urls(urls)
        self._first = 0
        self._current: int | None = None

    def candidates(self) -> list[str]:
        """Every node, starting with the one to try first."""
        return self.urls[self._first :] + self.urls[: self._first]

    def connected(self, url: str) -> None:
        """A connection to `url` is open: try it first again (a channel may close alone)."""
        self._current = self.urls.index(url)
        self._first = self._current

    def lost(self) -> None:
        """The connection dropped: the node may be gone, so start from the next one."""
        if self._current is not None:
            self._first = (self._current + 1) % len(self.urls)
            self._current = None

    @property
    def current(self) -> str | None:
        """The node connected to, if any."""
        return None if self._current is None else self.urls[self._current]

    def __len__(self) -> int:
        return len(self.urls)


def node_label(url: str | None) -> str | None:
    """``amqp://user:secret@rabbit-2:5672/shop`` → ``rabbit-2:5672``: a node for logs,
    without credentials or TLS settings (``amqps://rabbit-2/`` → ``rabbit-2:5671``)."""
    if url is None:
        return None
    parts = urlsplit(url)
    default = DEFAULT_AMQPS_PORT if parts.scheme == "amqps" else DEFAULT_AMQP_PORT
    return f"{parts.hostname}:{parts.port or default}"
