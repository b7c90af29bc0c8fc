"""`fleet worker`: run one worker process, or list the fleet's workers."""

from __future__ import annotations

import os
import sys

import click

from topology import load
from workers.cli import cli
from workers.cli.options import (
    file_option,
    management_url_option,
    metrics_port_option,
    resolve_url,
    url_option,
    warn_unless_own_user,
)
from workers.loader import load_worker
from workers.observability import context as tracing
from workers.runtime.loop import run
from workers.runtime.service import WorkerSettings, run_worker
from workers.runtime.shutdown import Shutdown

EXAMPLES = """
\b
Examples:
  fleet worker run inventory
  fleet worker run payments --concurrency 32 --prefetch 128
  FLEET_AMQP_URL=amqp://user:pw@rabbit-1:5672/prod fleet worker run shipping
  fleet worker run orders --metrics-port 9105      # Prometheus on :9105/metrics
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 fleet worker run payments   # traces
  fleet worker list
"""


@cli.group(epilog=EXAMPLES)
def worker() -> None:
    """Run and list workers.

    A worker is one process consuming one queue. Start more processes (here or
    on other machines) to scale: they share the queue as competing consumers.
    """


@worker.command("run", epilog=EXAMPLES)
@click.argument("name")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Handlers running at once (default: from the topology file).",
)
@click.option(
    "--prefetch",
    type=click.IntRange(min=1),
    default=None,
    help="Unacknowledged deliveries the broker may send ahead (default: from the file).",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds to let in-flight work finish on SIGTERM before requeueing the rest.",
)
@click.option(
    "--database-url",
    envvar="FLEET_DATABASE_URL",
    default=None,
    help="PostgreSQL URL for the inbox (env FLEET_DATABASE_URL): deduplicates across processes "
    "and restarts. Without it, only redeliveries to this process are caught.",
)
@click.option(
    "--stream-port",
    envvar="FLEET_STREAM_PORT",
    type=click.IntRange(1, 65535),
    default=5552,
    show_default=True,
    help="Workers on a stream: the stream protocol's port on the broker's host "
    "(env FLEET_STREAM_PORT).",
)
@metrics_port_option
@file_option
@url_option
@management_url_option
def run_command(
    name: str,
    concurrency: int | None,
    prefetch: int | None,
    drain_timeout: float,
    database_url: str | None,
    metrics_port: int | None,
    topology_file: str | None,
    url: str | None,
    management_url: str | None,
    stream_port: int,
) -> None:
    """Run worker NAME until SIGTERM or Ctrl-C.

    Consumes the worker's queue with manual acks, retries failures as the
    queue's retry policy says, parks what cannot be processed in <queue>.dead,
    and publishes follow-on events with publisher confirms. Reconnects by
    itself when the broker restarts; given several nodes, it fails over to the
    next when its node goes away. The first signal drains in-flight work;
    a second one stops at once (unfinished messages are requeued).

    A worker whose queue is a stream reads it over the stream protocol instead:
    the same handlers, one replica per stream (partition) at a time, its offset
    stored on the broker (or, with a database, in the handler's transaction).

    Serves Prometheus metrics on --metrics-port (its queue's lag included) and
    records trace spans when the OTEL_* variables name an exporter.
    """
    sys.path.insert(0, os.getcwd())  # worker modules of the user's project
    topology = load(topology_file)
    port = topology.metrics.port if metrics_port is None else metrics_port
    try:
        settings = WorkerSettings.from_topology(
            topology,
            name,
            resolve_url(url, topology),
            prefetch=prefetch,
            concurrency=concurrency,
            drain_timeout=drain_timeout,
            database_url=database_url,
            metrics_port=port or None,
            management_url=management_url,
            stream_port=stream_port,
        )
    except KeyError as exc:
        raise click.UsageError(str(exc.args[0])) from None
    warn_unless_own_user(topology, name, settings.url)
    tracing.configure(f"fleet.{name}")
    shutdown = Shutdown()

    on_stream = topology.queues[settings.topology.worker(name).queue].type == "stream"

    async def main() -> None:
        shutdown.install()
        if on_stream:
            # Imported here: a queue worker never loads the stream client.
            from workers.streams.service import run_stream_worker

            await run_stream_worker(settings, shutdown)
        else:
            await run_worker(settings, shutdown)

    run(main())


@worker.command("list", epilog=EXAMPLES)
@file_option
def list_command(topology_file: str | None) -> None:
    """List the topology's workers: queue, replicas, prefetch and the events they handle."""
    sys.path.insert(0, os.getcwd())
    topology = load(topology_file)
    rows = [("WORKER", "QUEUE", "REPLICAS", "PREFETCH", "CONCURRENCY", "HANDLES")]
    for name, spec in topology.workers.items():
        try:
            handles = ", ".join(
                h.event_type.__wire_name__ for h in load_worker(name, spec).handlers
            )
        except Exception as exc:  # a broken module should not hide the other workers
            handles = f"(cannot load: {exc})"
        rows.append(
            (
                name,
                spec.queue,
                str(spec.replicas),
                str(spec.prefetch),
                str(spec.concurrency),
                handles,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]))
