"""The machine a run measured: what the report prints above the table."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

PACKAGES = ("aio-pika", "aiormq", "pamqp", "faststream", "pydantic", "msgspec", "uvloop", "asyncpg")


def describe(overview: dict[str, Any]) -> dict[str, str]:
    """Cores, CPU model, OS, Python, RabbitMQ (from the management overview), libraries."""
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu_model(),
        "os": platform.platform(terse=True),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "rabbitmq": str(overview.get("rabbitmq_version", "?")),
        "erlang": str(overview.get("erlang_version", "?")),
        "libraries": ", ".join(f"{name} {_version(name)}" for name in PACKAGES),
        "load at start": load(),
    }


def load() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews a run."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "-"
