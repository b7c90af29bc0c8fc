"""`fleet standins run`: the stand-in payment gateway and carrier API for the demo and tests."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType

import click

from fulfilment.standins import Faults, serve
from workers.cli import fail

EXAMPLES = """
\b
Examples:
  fleet standins run
  fleet standins run --port 9000 --error-rate 0.1 --slow-rate 0.05
  FLEET_GATEWAY_URL=http://127.0.0.1:9000/gateway fleet worker run payments
"""


@click.group(epilog=EXAMPLES)
def standins() -> None:
    """Stand-ins for the reference fleet's external systems.

    One HTTP server plays the payment gateway (/gateway), the carrier API
    (/carrier) and a webhook receiver (/webhooks/<name>) that verifies
    Standard Webhooks signatures with the secrets of --webhook-secrets-env.
    Failures are injected per request by words in the customer id
    (decline, flaky, unstable, quota, timeout, slow, hang) and at random by the rates below.
    """


@standins.command("run", epilog=EXAMPLES)
@click.option("--host", default="127.0.0.1", show_default=True, envvar="FLEET_STANDINS_HOST")
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=8765,
    show_default=True,
    envvar="FLEET_STANDINS_PORT",
    help="0 picks a free port (printed on start).",
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    envvar="FLEET_STANDINS_ERROR_RATE",
    help="Share of requests answered 503.",
)
@click.option(
    "--slow-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    envvar="FLEET_STANDINS_SLOW_RATE",
    help="Share of requests answered after --slow-seconds.",
)
@click.option(
    "--decline-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    envvar="FLEET_STANDINS_DECLINE_RATE",
    help="Share of new charges declined.",
)
@click.option("--slow-seconds", type=click.FloatRange(min=0), default=0.5, show_default=True)
@click.option(
    "--hang-seconds",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="How long a hanging request waits before answering 504.",
)
@click.option(
    "--webhook-error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    envvar="FLEET_STANDINS_WEBHOOK_ERROR_RATE",
    help="Share of verified webhook requests answered 503.",
)
@click.option(
    "--webhook-secrets-env",
    multiple=True,
    default=["FLEET_NOTIFY_WEBHOOK_SECRET"],
    show_default=True,
    metavar="VAR",
    help="Environment variables holding the whsec_ secrets the webhook receiver accepts.",
)
def run_command(
    host: str,
    port: int,
    error_rate: float,
    slow_rate: float,
    decline_rate: float,
    slow_seconds: float,
    hang_seconds: float,
    webhook_error_rate: float,
    webhook_secrets_env: tuple[str, ...],
) -> None:
    """Serve the gateway, the carrier and the webhook receiver until SIGTERM or Ctrl-C."""
    faults = Faults(
        error_rate, slow_rate, decline_rate, slow_seconds, hang_seconds, webhook_error_rate
    )
    secrets = [os.environ[name] for name in webhook_secrets_env if os.environ.get(name)]
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with contextlib.ExitStack() as stack:
        try:
            state = stack.enter_context(serve(host, port, faults, secrets))
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror}")
            return
        click.echo(
            f"standins: listening on {state.url} "
            f"(gateway {state.url}/gateway, carrier {state.url}/carrier, "
            f"webhooks {state.url}/webhooks/<name>: {len(secrets)} secret(s))",
            err=True,
        )
        while not stop.wait(1):
            pass
    click.echo("standins: stopped", err=True)
