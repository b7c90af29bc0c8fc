"""The fast path: everything in fleet that touches aiormq's or pamqp's private
internals, fenced in here, and on only for the versions it was tested against.

    frames.py    reads frames in bulk: aiormq's FrameReceiver swapped process-wide
    routing.py   hands a consume channel's deliveries to their consumer straight from
                 the receive buffer, past aiormq's per-frame queues and future store
    decoding.py  decodes a delivery's three frames into pamqp's objects directly,
                 tolerating values no decoder reads (`x-fleet-undecodable`)
    sending.py   queues a publish on aiormq's channel: its lock, sequence numbers
                 and confirm bookkeeping
    wire.py      marshals fleet's publishes byte for byte as pamqp does

Measured gains (issue 6's benchmark): the drain about 2.4x aio-pika instead of
about 1.9x, the saga step about 2.1x instead of 1.3x; routing (issue 21) a
quorum-queue drain about 1.5x faster again. The same runtime works on
aiormq's public API alone: with ``FLEET_AMQP_FASTPATH=0``, or automatically
(with a warning) on an aiormq or pamqp outside `TESTED`, since a change in
aiormq's confirm matching could otherwise make fleet ack a delivery whose
follow-on was never confirmed. On the public API, a delivery whose properties
pamqp cannot decode (a timestamp past the year 9999, text that is not UTF-8)
breaks its connection instead of being parked: the fast path is what reads them.
"""

from __future__ import annotations

import importlib.metadata
import os
from functools import cache

import structlog

log = structlog.get_logger("fleet.fastpath")

#: The versions the fast path was tested against: (lowest, below), per library.
#: pyproject.toml pins the same ranges; `tests/integration/test_fastpath.py` fails
#: when aiormq's internals the fast path uses change shape.
TESTED = {
    "aiormq": ((7, 2, 4), (7, 3)),
    "pamqp": ((4, 0, 1), (4, 1)),
}
#: ``0`` (or ``off``, ``false``, ``no``) runs on aiormq's public API only.
SWITCH = "FLEET_AMQP_FASTPATH"


@cache
def enabled() -> bool:
    """Whether this process takes the fast path: not switched off, and the libraries
    are versions it was tested against (decided once, logged once)."""
    if os.environ.get(SWITCH, "1").strip().lower() in ("0", "off", "false", "no"):
        log.info("fastpath.off", reason=f"{SWITCH}=0: aiormq's public API only")
        return False
    untested = untested_versions()
    if untested:
        log.warning(
            "fastpath.off",
            reason="untested library versions: aiormq's public API only",
            versions=untested,
        )
        return False
    return True


def untested_versions() -> dict[str, str]:
    """The installed versions outside `TESTED`, by library."""
    found = {}
    for library, (lowest, below) in TESTED.items():
        version = importlib.metadata.version(library)
        if not lowest <= _parsed(version) < below:
            found[library] = version
    return found


def _parsed(version: str) -> tuple[int, ...]:
    numbers = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)
