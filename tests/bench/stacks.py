"""Where the time goes: a summary of py-spy's collapsed stacks (`--profile`).

    python -m tests.bench.stacks PROFILE.txt [...] [--top N] [--match TEXT]

Each line of a collapsed-stack file is ``frame;frame;...;frame COUNT``. The
summary gives every function's share of the samples as the innermost frame
(self) and anywhere on the stack (inclusive), counted once per sample.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# py-spy writes a frame as "function (path/to/file.py:line)"; the line varies
# within a function, so it is dropped.
_LINE = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    """A frame without its line number, and with the path cut after site-packages."""
    frame = _LINE.sub(")", frame)
    return re.sub(r"\(.*?site-packages/", "(", frame)


def summarize(lines: Iterable[str]) -> tuple[int, Counter[str], Counter[str]]:
    """Total samples, self samples per function, inclusive samples per function."""
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return total, own, inclusive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.stacks", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    parser.add_argument("--match", default="", help="only functions whose frame contains this")
    args = parser.parse_args(argv)
    lines = [line for path in args.files for line in path.read_text().splitlines()]
    total, own, inclusive = summarize(lines)
    if not total:
        print("no samples")
        return 1
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"\n{title} ({total} samples)")
        rows = [(n, c) for n, c in counter.most_common() if args.match in n][: args.top]
        for name, count in rows:
            print(f"{100 * count / total:6.1f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
