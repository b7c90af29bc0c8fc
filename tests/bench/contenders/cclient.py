"""The C-client ceiling: `cclient/drain.c` on librabbitmq, built by the bench at run time.

It drains the queue as the other contenders do (basic.qos prefetch, basic.consume,
one ack per delivery, the same warm-up), decoding nothing: the rate one
connection gets from this broker, which fleet's drain is reported as a share
of. The binary is cached by the source's hash under the temp directory, so a
run compiles it once; without a C compiler or librabbitmq's headers
(`apt-get install librabbitmq-dev`) `build` says why and the bench leaves the
contender out.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.bench.command import Command
from tests.bench.protocol import Job

KEY = "c-client"
SOURCE = Path(__file__).resolve().parent.parent / "cclient" / "drain.c"
#: Where built clients are kept, named by their source's hash.
CACHE = Path(tempfile.gettempdir()) / "fleet-bench-cclient"


class Unavailable(Exception):
    """The C client cannot be built here; the message says why, in one line."""


async def build(source: Path = SOURCE, cache: Path = CACHE) -> Path:
    """The compiled client (compiled into `cache` now unless already there).

    Raises:
        Unavailable: no C compiler, no librabbitmq headers, or another build error.
    """
    compiler = _compiler()
    binary = _cached(source, cache)
    if binary.exists():
        return binary
    partial = binary.with_name(f"{binary.name}.{os.getpid()}")
    process = await asyncio.create_subprocess_exec(
        compiler,
        "-O2",
        "-o",
        str(partial),
        str(source),
        "-lrabbitmq",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise Unavailable(_why(output.decode(errors="replace"), process.returncode))
    partial.replace(binary)  # atomic: a concurrent run never executes half a file
    return binary


def _cached(source: Path, cache: Path) -> Path:
    """Where the binary of this very source lives (`cache` is created)."""
    cache.mkdir(parents=True, exist_ok=True)
    return cache / f"{source.stem}-{hashlib.sha256(source.read_bytes()).hexdigest()[:16]}"


def _compiler() -> str:
    """$CC, else cc, else gcc, as an absolute path."""
    wanted = os.environ.get("CC")
    for name in [wanted] if wanted else ["cc", "gcc"]:
        found = shutil.which(name)
        if found:
            return found
    raise Unavailable(f"no C compiler ({wanted or 'cc or gcc'}) on PATH")


def _why(output: str, code: int | None) -> str:
    """The build's failure in one line."""
    lines = output.strip().splitlines()
    missing = [line for line in lines if "No such file" in line or "not found" in line]
    if any("amqp" in line or "rabbitmq-c" in line for line in missing):
        return "librabbitmq headers missing (apt-get install librabbitmq-dev)"
    if any("-lrabbitmq" in line or "lrabbitmq" in line for line in lines):
        return "librabbitmq not found by the linker (apt-get install librabbitmq-dev)"
    return f"build failed: {lines[0] if lines else f'exit {code}'}"


def command(job: Job, binary: Path) -> Command:
    """The client's argv for `job`: the URL's parts, the queue and the counts."""
    url = urlsplit(job.url)
    vhost = unquote(url.path[1:]) if len(url.path) > 1 else "/"
    return Command(
        [
            str(binary),
            url.hostname or "127.0.0.1",
            str(url.port or 5672),
            unquote(url.username or "guest"),
            unquote(url.password or "guest"),
            vhost,
            job.queue,
            str(job.expected),
            str(job.warmup_messages),
            str(job.prefetch),
        ]
    )
