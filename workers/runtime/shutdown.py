"""Signals → a stop event: the first SIGTERM or SIGINT asks for a graceful stop;
a second one stops waiting for in-flight work."""

from __future__ import annotations

import asyncio
import signal

import structlog

log = structlog.get_logger("fleet.shutdown")


class Shutdown:
    """Stop requests for one process.

    `requested` is set by the first signal (finish in-flight work, then exit);
    `forced` by the second (stop waiting; unfinished deliveries are requeued).
    """

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()

    def install(self) -> None:
        """Handle SIGTERM and SIGINT on the running loop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def request(self) -> None:
        """Ask for a graceful stop (what the first signal does)."""
        self.requested.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            log.warning("shutdown.forced", signal=sig.name)
            self.forced.set()
        else:
            log.info("shutdown.requested", signal=sig.name)
            self.requested.set()
