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

from tests.bench.process import Command
from tests.bench.protocol import Job

KEY = "c-client"
SOURCE = Path(__file__).resolve().parent.parent / "cclient" / "drain.c"


class Unavailable(Exception):
    """The C client cannot be built here; the message says why, in one line."""


async def build() -> Path:
    """The compiled client (compiled now unless cached).

    Raises:
        Unavailable: no C compiler, no librabbitmq headers, or another build error.
    """
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise Unavailable("no C compiler (cc or gcc) on PATH")
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    binary = Path(tempfile.gettempdir()) / "fleet-bench-cclient" / f"drain-{digest}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}")
    process = await asyncio.create_subprocess_exec(
        compiler,
        "-O2",
        "-o",
        str(partial),
        str(SOURCE),
        "-lrabbitmq",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        text = output.decode(errors="replace")
        if "amqp.h" in text or "tcp_socket.h" in text:
            raise Unavailable("librabbitmq headers missing (apt-get install librabbitmq-dev)")
        if "-lrabbitmq" in text or "rabbitmq" in text:
            raise Unavailable("librabbitmq not found by the linker (librabbitmq-dev)")
        first = text.strip().splitlines()[0] if text.strip() else f"exit {process.returncode}"
        raise Unavailable(f"build failed: {first}")
    partial.replace(binary)
    return binary


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
