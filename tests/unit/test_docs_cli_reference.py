"""The manual's CLI reference is every command's `--help`, fleet's own and the
installed projects' (the reference fleet's `demo` and `standins`), so it cannot
drift from the code: docs/hooks/cli_reference.py renders it at build time, and
these tests hold it to `fleet ... --help` as click answers it."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest
from click.testing import CliRunner

from workers.cli import cli

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "docs" / "hooks" / "cli_reference.py"


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    """The MkDocs hook, loaded from its file as MkDocs loads it."""
    spec = importlib.util.spec_from_file_location("fleet_docs_cli_reference", HOOK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def help_of(path: list[str]) -> str:
    """What `fleet PATH --help` prints on an 80-column terminal."""
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="fleet", terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def listed_commands(path: list[str]) -> list[list[str]]:
    """Every command path below PATH, read off the `Commands:` sections of `--help`."""
    found: list[list[str]] = []
    text = help_of(path)
    if "\nCommands:\n" not in text:
        return found
    section = text.split("\nCommands:\n", 1)[1]
    for line in section.splitlines():
        match = re.match(r"^  ([a-z][a-z0-9-]*)(\s|$)", line)
        if not match:
            if line and not line.startswith(" "):
                break
            continue
        sub = [*path, match.group(1)]
        found += [sub, *listed_commands(sub)]
    return found


class TestTheCliReference:
    def test_every_command_that_help_lists_has_a_section(self, hook: ModuleType) -> None:
        """Each command `fleet --help` lists, at any depth, has a heading on the page."""
        # Given
        commands = [" ".join(["fleet", *path]) for path in listed_commands([])]
        # When
        page = hook.render()
        # Then
        headings = set(re.findall(r"(?m)^#{2,4} (fleet.*)$", page))
        assert commands, "fleet --help listed no commands"
        assert [c for c in commands if c not in headings] == []
        assert "fleet" in headings

    def test_the_plugin_commands_are_documented(self, hook: ModuleType) -> None:
        """The reference fleet's entry-point commands are on the page with their subcommands."""
        paths = {entry.path for entry in hook.entries()}
        assert {"fleet demo", "fleet standins", "fleet standins run"} <= paths

    def test_each_section_is_the_commands_help_word_for_word(self, hook: ModuleType) -> None:
        """The text under a heading is exactly what `--help` prints."""
        for entry in hook.entries():
            assert entry.help.rstrip() == help_of(entry.path.split()[1:]).rstrip(), entry.path

    def test_the_page_keeps_its_marker(self, hook: ModuleType) -> None:
        """docs/cli.md says where the reference goes; the build fails without it."""
        assert hook.MARKER in (ROOT / "docs" / hook.PAGE).read_text()

    def test_a_command_that_cannot_be_loaded_fails_the_build(self, hook: ModuleType) -> None:
        """A group listing a command it cannot load (a broken entry point) is an error."""

        class Broken(click.Group):
            def list_commands(self, ctx: click.Context) -> list[str]:
                return ["ghost"]

            def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
                return None

        with pytest.raises(RuntimeError, match="lists 'ghost' but cannot load it"):
            list(hook.walk(Broken("fleet")))
