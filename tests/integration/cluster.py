"""A 3-node RabbitMQ cluster for tests, run by scripts/cluster.

It gets its own node names, ports and directory (`fleet-test-I@localhost`,
AMQP 5711+, management 15711+), so it never meets a cluster someone started
by hand with the script's defaults, nor the machine's own node.

Its nodes run the machine's installed RabbitMQ (the script's ``$RABBITMQ_BIN``,
default /usr/lib/rabbitmq/bin), whatever FLEET_TEST_AMQP_URL and
FLEET_TEST_RABBITMQCTL point the rest of the suite at: on this machine that is
3.10, and the chaos tests are not run on 4.0.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster"
BASE_PORT = 5711
#: The RabbitMQ whose rabbitmq-server and rabbitmqctl scripts/cluster runs.
BIN = Path(os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
ENV = {
    **os.environ,
    "FLEET_CLUSTER_DIR": "/tmp/fleet-cluster-test",
    "FLEET_CLUSTER_PORT": str(BASE_PORT),
    "FLEET_CLUSTER_PREFIX": "fleet-test",
}


class ClusterUnavailable(Exception):
    """The cluster cannot be started here (no RabbitMQ, not root, ...)."""


@dataclass(frozen=True)
class Cluster:
    """A running cluster of `size` nodes."""

    size: int

    @staticmethod
    def start(size: int) -> Cluster:
        """Start it (after stopping a leftover from an interrupted run).

        Raises:
            ClusterUnavailable: with the script's output.
        """
        if not (BIN / "rabbitmqctl").exists() or os.geteuid() != 0:
            raise ClusterUnavailable("needs RabbitMQ installed and root (to run nodes as rabbitmq)")
        _script("stop")
        result = _script("start", str(size))
        if result.returncode != 0:
            _script("stop")
            raise ClusterUnavailable(result.stdout + result.stderr)
        return Cluster(size)

    def stop(self) -> None:
        _script("stop")

    def port(self, node: int) -> int:
        return BASE_PORT + node - 1

    def amqp_url(self, node: int, vhost: str = "/") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port(node)}/{quote(vhost, safe='')}"

    def urls(self, vhost: str, *, first: int = 1) -> str:
        """Every node's URL for `vhost`, comma-separated, starting with node `first`."""
        order = [(first - 1 + i) % self.size + 1 for i in range(self.size)]
        return ",".join(self.amqp_url(node, vhost) for node in order)

    def management_url(self, node: int = 1) -> str:
        return f"http://guest:guest@127.0.0.1:{10000 + self.port(node)}"

    def node_of(self, host_port: str) -> int:
        """The node index of a ``127.0.0.1:5712`` label from the logs."""
        return int(host_port.rsplit(":", 1)[1]) - BASE_PORT + 1

    def api(self, node: int = 1) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://127.0.0.1:{10000 + self.port(node)}",
            auth=("guest", "guest"),
            timeout=30,
        )

    def add_vhost(self, vhost: str) -> None:
        with self.api() as api:
            api.put(f"/api/vhosts/{quote(vhost, safe='')}").raise_for_status()
            api.put(
                f"/api/permissions/{quote(vhost, safe='')}/guest",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            ).raise_for_status()

    def delete_vhost(self, vhost: str) -> None:
        with self.api() as api:
            api.delete(f"/api/vhosts/{quote(vhost, safe='')}")

    async def run(self, *args: str) -> None:
        """`scripts/cluster ARGS` without blocking the event loop (publishers keep going)."""
        process = await asyncio.create_subprocess_exec(
            str(SCRIPT),
            *args,
            env=ENV,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"scripts/cluster {' '.join(args)} failed:\n{output.decode()}")


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], env=ENV, capture_output=True, text=True, timeout=300, check=False
    )
