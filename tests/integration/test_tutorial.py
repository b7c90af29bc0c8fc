"""docs/tutorial.md, run block by block, in order, against the test broker.

The tutorial cannot rot: every command it shows is run and every file it shows
is written, in a temporary directory, with `fleet` pointed at a vhost of its
own (FLEET_AMQP_URL, FLEET_MANAGEMENT_URL). A block that fails fails the test
with its text, its line in the page and what it printed.

How the page says what to run (the HTML comments are invisible on the site):

- A ```` ```console ```` block: each line starting with `$ ` is a command (a
  line ending in `\\` goes on with the next), run by bash in the tutorial's
  working directory; a `cd` carries over to the commands after it. A command
  that exits non-zero fails the test. The other lines are output that must
  appear, in order, in what the block's commands print (stdout and stderr):
  `…` stands for any text, and a run of spaces for any whitespace.
- A block with a title, ```` ```python title="shop/workers/welcome.py" ````,
  is a file: its text is written to that path (relative to the working
  directory), as the reader would save it; the commands after it run it. A
  block that replaces a file (one `fleet new` made, or an earlier block)
  highlights exactly the lines it adds or changes (`hl_lines="11-12 22-23"`),
  so the page always shows the scaffold as `fleet new` makes it, plus what
  the reader changes.
- `<!-- background: NAME -->` before a console block: its one command starts
  in the background, as in a second terminal, and the page goes on; its
  expected lines must appear in the process's output (it is ready) within
  the timeout.
- `<!-- output: NAME -->` before a block: lines that must appear in the
  output of background process NAME within the timeout (same matching).
- `<!-- stop: NAME -->`: Ctrl-C to NAME (SIGINT to its process group); the
  test waits for it to exit, and its output stays readable for an
  `output:` after it.
- `<!-- wait -->` before a console block: run it again until its expected
  output appears, within the timeout (a command reading state that settles by
  itself, such as `fleet dlq list`).

Other blocks (untitled yaml, text, indented blocks) are for reading only; a
python, sh or bash block that is neither a file nor run is an error, so no
code on the page escapes the test. Whatever is still running at the end is
stopped.
"""

from __future__ import annotations

import difflib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Broker

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
#: How long a background process, an `output:` or a `wait` block may take.
TIMEOUT = 60.0
#: How long one command may take.
COMMAND_TIMEOUT = 120.0

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
FENCE = re.compile(r"^```(\w*)(.*)$")
DIRECTIVE = re.compile(r"^<!--\s*(background|output|stop|wait)(?::\s*([\w-]+))?\s*-->$")
TITLE = re.compile(r'title="([^"]+)"')
HL_LINES = re.compile(r'hl_lines="([^"]*)"')
#: Languages whose blocks must be run or written, never only shown.
CODE = {"console", "python", "sh", "bash", "shell"}


@dataclass
class Block:
    """A fenced block of the page, with the directives written before it."""

    line: int
    language: str
    title: str | None
    text: str
    highlighted: set[int] = field(default_factory=set)
    background: str | None = None
    output: str | None = None
    wait: bool = False

    def describe(self) -> str:
        fence = f"```{self.language}" + (f' title="{self.title}"' if self.title else "")
        return f"docs/tutorial.md:{self.line}:\n{fence}\n{self.text}```"


@dataclass
class Stop:
    """`<!-- stop: NAME -->`."""

    line: int
    name: str


def parse(markdown: str) -> list[Block | Stop]:
    """The page's blocks and stops, in order."""
    steps: list[Block | Stop] = []
    pending: dict[str, str | bool] = {}
    lines = markdown.splitlines(keepends=True)
    index = 0
    while index < len(lines):
        stripped = lines[index].strip()
        directive = DIRECTIVE.match(stripped)
        fence = FENCE.match(stripped)
        if directive:
            kind, name = directive.groups()
            if kind == "stop":
                assert name, f"docs/tutorial.md:{index + 1}: stop needs a process name"
                steps.append(Stop(index + 1, name))
            elif kind == "wait":
                pending["wait"] = True
            else:
                assert name, f"docs/tutorial.md:{index + 1}: {kind} needs a process name"
                pending[kind] = name
        elif stripped.startswith("<!--"):
            raise AssertionError(f"docs/tutorial.md:{index + 1}: unknown directive {stripped}")
        elif fence and fence.group(1):
            start = index
            body: list[str] = []
            index += 1
            while not lines[index].strip().startswith("```"):
                body.append(lines[index])
                index += 1
            title = TITLE.search(fence.group(2))
            highlighted = HL_LINES.search(fence.group(2))
            steps.append(
                Block(
                    line=start + 1,
                    language=fence.group(1),
                    title=title.group(1) if title else None,
                    text="".join(body),
                    highlighted=line_numbers(highlighted.group(1)) if highlighted else set(),
                    background=pending.get("background"),  # type: ignore[arg-type]
                    output=pending.get("output"),  # type: ignore[arg-type]
                    wait=bool(pending.get("wait")),
                )
            )
            pending = {}
        index += 1
    return steps


def line_numbers(spec: str) -> set[int]:
    """`hl_lines="11-12 22"` as {11, 12, 22}."""
    numbers: set[int] = set()
    for part in spec.split():
        first, _, last = part.partition("-")
        numbers.update(range(int(first), int(last or first) + 1))
    return numbers


def changed_lines(old: str, new: str) -> set[int]:
    """The lines of `new` (from 1) that `old` does not have at that place."""
    matcher = difflib.SequenceMatcher(a=old.splitlines(), b=new.splitlines(), autojunk=False)
    return {
        number + 1
        for tag, _, _, first, last in matcher.get_opcodes()
        if tag in ("replace", "insert")
        for number in range(first, last)
    }


def commands_and_expected(text: str) -> tuple[list[str], list[str]]:
    """A console block's commands (continuations joined) and its expected lines."""
    commands: list[str] = []
    expected: list[str] = []
    continuing = False
    for line in text.splitlines():
        if continuing:
            commands[-1] += "\n" + line
        elif line.startswith("$ "):
            commands.append(line[2:])
        elif line.strip():
            expected.append(line)
        continuing = bool(commands) and commands[-1].endswith("\\")
    return commands, expected


def pattern(expected: str) -> re.Pattern[str]:
    """An expected line as a regex: `…` is any text, spaces are any whitespace."""
    parts = [
        r"\s+".join(re.escape(word) for word in piece.split())
        for piece in expected.strip().split("…")
    ]
    return re.compile(r".*?".join(parts))


def missing(expected: list[str], output: str) -> list[str]:
    """The expected lines that do not appear, in order, in `output` (each on a line of its own)."""
    lines = ANSI.sub("", output).splitlines()
    position = 0
    for number, wanted in enumerate(expected):
        regex = pattern(wanted)
        for offset, line in enumerate(lines[position:]):
            if regex.search(line):
                position += offset + 1
                break
        else:
            return expected[number:]
    return []


@dataclass
class Background:
    """A process started by a `background:` block, its output collected as it comes."""

    name: str
    process: subprocess.Popen[str]
    block: Block
    chunks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.chunks.append(line)

    @property
    def output(self) -> str:
        return "".join(self.chunks)

    def stop(self) -> None:
        """Ctrl-C, as the reader would press it, then wait for the exit."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.finish_reading()

    def finish_reading(self) -> None:
        """Wait for the last of the output of a process that has exited."""
        self._reader.join(timeout=5)


class Tutorial:
    """Runs the page's steps in a working directory, with the test's environment."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.cwd = workdir
        self.env = env
        self.running: dict[str, Background] = {}
        self.stopped: dict[str, Background] = {}

    def fail(self, block: Block, why: str, output: str) -> None:
        pytest.fail(
            f"{why}\n{block.describe()}\n--- output ---\n{ANSI.sub('', output)}", pytrace=False
        )

    def run(self, steps: list[Block | Stop]) -> None:
        for step in steps:
            if isinstance(step, Stop):
                self.stop(step)
            elif step.output is not None:
                self.expect_output(step)
            elif step.title is not None:
                self.write(step)
            elif step.language == "console" and step.background is not None:
                self.start(step)
            elif step.language == "console":
                self.console(step)
            elif step.language in CODE:
                pytest.fail(
                    f"a {step.language} block is neither a file (title=) nor a console block: "
                    f"the test cannot run it\n{step.describe()}",
                    pytrace=False,
                )

    def write(self, block: Block) -> None:
        """Save the file, after checking that the page highlights what it changes."""
        assert block.title is not None
        path = self.cwd / block.title
        if path.exists():
            changed = changed_lines(path.read_text(), block.text)
            if changed != block.highlighted:
                self.fail(
                    block,
                    f"the block replaces {block.title}, changing lines {sorted(changed)}, "
                    f"but highlights {sorted(block.highlighted)}: "
                    "keep it the file as it was, plus the highlighted changes",
                    path.read_text(),
                )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.text)

    def shell(self, command: str) -> subprocess.CompletedProcess[str]:
        """One command in bash, in the working directory; afterwards, bash's directory is ours."""
        marker = "__tutorial_cwd__"
        script = f'{command}\nstatus=$?\necho {marker}"$PWD"\nexit $status'
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        stdout, _, cwd = result.stdout.rpartition(marker)
        if cwd.strip():
            self.cwd = Path(cwd.strip())
        return subprocess.CompletedProcess(result.args, result.returncode, stdout, result.stderr)

    def console(self, block: Block) -> None:
        commands, expected = commands_and_expected(block.text)
        deadline = time.monotonic() + TIMEOUT
        while True:
            printed = ""
            for command in commands:
                result = self.shell(command)
                printed += f"$ {command}\n{result.stdout}{result.stderr}"
                if result.returncode != 0:
                    self.fail(block, f"`{command}` exited {result.returncode}", printed)
            absent = missing(expected, printed)
            if not absent:
                return
            if not block.wait or time.monotonic() > deadline:
                self.fail(block, f"expected output did not appear: {absent[0]!r}", printed)
            time.sleep(0.5)

    def start(self, block: Block) -> None:
        assert block.background is not None
        commands, expected = commands_and_expected(block.text)
        assert len(commands) == 1, f"a background block runs one command\n{block.describe()}"
        if block.background in self.running:
            self.fail(block, f"{block.background} is already running", "")
        process = subprocess.Popen(
            ["bash", "-c", commands[0]],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        background = Background(block.background, process, block)
        self.running[block.background] = background
        self.stopped.pop(block.background, None)
        self.await_lines(block, background, expected)

    def await_lines(self, block: Block, background: Background, expected: list[str]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while absent := missing(expected, background.output):
            if background.process.poll() is not None:
                background.finish_reading()
                if absent := missing(expected, background.output):
                    self.fail(
                        block,
                        f"{background.name} exited {background.process.returncode} without "
                        f"printing {absent[0]!r}",
                        background.output,
                    )
                return
            if time.monotonic() > deadline:
                self.fail(
                    block, f"{background.name} did not print {absent[0]!r}", background.output
                )
            time.sleep(0.2)

    def expect_output(self, block: Block) -> None:
        assert block.output is not None
        background = self.running.get(block.output) or self.stopped.get(block.output)
        if background is None:
            self.fail(block, f"no process {block.output} was started", "")
            return
        expected = [line for line in block.text.splitlines() if line.strip()]
        self.await_lines(block, background, expected)

    def stop(self, step: Stop) -> None:
        background = self.running.pop(step.name, None)
        assert background is not None, f"docs/tutorial.md:{step.line}: {step.name} is not running"
        background.stop()
        self.stopped[step.name] = background

    def stop_all(self) -> None:
        for name in list(self.running):
            self.running.pop(name).stop()


class TestParsing:
    """The page's conventions, on small examples (no broker)."""

    def test_console_lines_are_commands_and_expected_output(self) -> None:
        commands, expected = commands_and_expected(
            "$ fleet publish a b \\\n  --json '{}'\nc-1\n$ cd shop\n"
        )
        assert commands == ["fleet publish a b \\\n  --json '{}'", "cd shop"]
        assert expected == ["c-1"]

    def test_an_ellipsis_matches_any_text_and_spaces_any_whitespace(self) -> None:
        output = "2026-01-01 [info     ] worker.stopped   processed=1 retried=0\n"
        assert missing(["… worker.stopped … processed=1 …"], output) == []
        assert missing(["worker.stopped processed=2"], output) == ["worker.stopped processed=2"]

    def test_expected_lines_must_appear_in_order(self) -> None:
        assert missing(["b", "a"], "a\nb\n") == ["a"]

    def test_directives_attach_to_the_next_block_and_stops_stand_alone(self) -> None:
        steps = parse(
            "<!-- background: w -->\n```console\n$ fleet worker run w\n```\n"
            "<!-- stop: w -->\n<!-- output: w -->\n```text\nbye\n```\n"
        )
        assert [type(s).__name__ for s in steps] == ["Block", "Stop", "Block"]
        first, stop, last = steps
        assert isinstance(first, Block)
        assert first.background == "w"
        assert isinstance(stop, Stop)
        assert stop.name == "w"
        assert isinstance(last, Block)
        assert last.output == "w"

    def test_a_replaced_file_shows_what_changed_as_highlighted_lines(self) -> None:
        assert line_numbers("11-12 22") == {11, 12, 22}
        assert changed_lines("a\nb\nc\n", "a\nimport os\nb\nC\n") == {2, 4}
        assert changed_lines("a\nb\n", "a\n") == set()  # a line dropped is shown by its absence

    def test_the_page_has_no_code_the_test_would_skip(self) -> None:
        """Every python and shell block of the page is a file or is run."""
        for step in parse(TUTORIAL.read_text()):
            if isinstance(step, Block) and step.language in CODE:
                assert step.language == "console" or step.title, step.describe()


def test_the_tutorial_runs_as_written(broker: Broker, tmp_path: Path) -> None:
    """From `fleet new` to a second worker: every block of docs/tutorial.md, in order."""
    # Given: an empty directory, and `fleet` on the PATH pointed at the test's vhost
    env = {
        key: value
        for key, value in os.environ.items()
        if key.startswith("FLEET_TEST_") or not key.startswith(("FLEET_", "OTEL_", "PYTEST_"))
    }
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "FLEET_AMQP_URL": broker.amqp_url,
        "FLEET_MANAGEMENT_URL": broker.management_url,
        # What a terminal shows (the colours are stripped); no metrics ports to collide on.
        "FLEET_LOG_FORMAT": "console",
        "FLEET_METRICS_PORT": "0",
    }
    tutorial = Tutorial(tmp_path, env)
    # When / Then: each block does what the page says
    try:
        tutorial.run(parse(TUTORIAL.read_text()))
    finally:
        tutorial.stop_all()
