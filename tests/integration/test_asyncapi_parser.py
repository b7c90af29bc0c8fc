"""`fleet asyncapi` against the official AsyncAPI parser, on the reference fleet and on
a project `fleet new` made.

The parser is @asyncapi/parser, pinned in tests/asyncapi/package.json (its
package-lock.json is committed) and run with the machine's Node.js by
tests/asyncapi/parse.js, which prints its diagnostics as JSON. The first test
to need it installs it with `npm ci` into tests/asyncapi/node_modules
(git-ignored); without Node.js and npm the tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from workers.scaffold import create

ROOT = Path(__file__).resolve().parents[2]
PARSER_DIR = ROOT / "tests" / "asyncapi"
REFERENCE = ROOT / "examples" / "fulfilment"
#: A cold `npm ci` of the parser's 168 packages takes about 15 s here.
NPM_TIMEOUT = 300


def pinned_version() -> str:
    """The parser version package.json pins."""
    manifest = json.loads((PARSER_DIR / "package.json").read_text())
    version: str = manifest["dependencies"]["@asyncapi/parser"]
    return version


@pytest.fixture(scope="session")
def parser() -> Path:
    """The parse script, with the pinned parser installed beside it."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are needed to run the AsyncAPI parser: install nodejs")
    installed = PARSER_DIR / "node_modules" / "@asyncapi" / "parser" / "package.json"
    if not installed.is_file() or json.loads(installed.read_text())["version"] != pinned_version():
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PARSER_DIR,
            check=True,
            timeout=NPM_TIMEOUT,
            env={**os.environ, "SCARF_ANALYTICS": "false"},
        )
    return PARSER_DIR / "parse.js"


def parse(parser: Path, document: Path) -> dict[str, Any]:
    """The parser's report on a document: its version, whether it parsed, its diagnostics."""
    result = subprocess.run(
        ["node", str(parser), str(document)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def errors(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in report["diagnostics"] if d["severity"] == "error"]


def fleet_asyncapi(project: Path, output: Path, *options: str) -> None:
    """Run `fleet asyncapi --output OUTPUT` in the project's directory, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "asyncapi", "--output", str(output), *options],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


class TestTheOfficialParser:
    def test_the_reference_fleets_document_parses_without_an_error(
        self, parser: Path, tmp_path: Path
    ) -> None:
        """The reference fleet's AsyncAPI document passes the pinned parser, errors none."""
        # Given the reference fleet's document, as YAML
        document = tmp_path / "asyncapi.yaml"
        fleet_asyncapi(REFERENCE, document)
        # When the official parser reads it
        report = parse(parser, document)
        # Then it is the pinned parser, the document parsed, and nothing is an error
        assert report["parser"] == pinned_version()
        assert report["valid"], report["diagnostics"]
        assert errors(report) == []

    def test_the_json_format_parses_as_well(self, parser: Path, tmp_path: Path) -> None:
        """The same document as JSON passes the parser too."""
        document = tmp_path / "asyncapi.json"
        fleet_asyncapi(REFERENCE, document, "--format", "json")
        report = parse(parser, document)
        assert report["valid"], report["diagnostics"]
        assert errors(report) == []

    def test_a_new_projects_document_parses_without_an_error(
        self, parser: Path, tmp_path: Path
    ) -> None:
        """The document of a project `fleet new` just made passes the parser."""
        # Given a fresh project (its package named after the directory, so it is
        # imported in the fleet process only)
        project = tmp_path / "asyncapi_shop"
        create(project)
        document = tmp_path / "shop.asyncapi.yaml"
        # When its document is made from inside it and parsed
        fleet_asyncapi(project, document)
        report = parse(parser, document)
        # Then it parsed without an error, and describes the project's own events
        assert report["valid"], report["diagnostics"]
        assert errors(report) == []
        assert "CustomerSignedUp.v1:" in document.read_text()

    def test_the_parser_reports_an_operation_whose_message_is_not_its_channels(
        self, parser: Path, tmp_path: Path
    ) -> None:
        """The check is real: a document the parser must refuse yields an error."""
        # Given the reference document, with a worker said to receive from its queue
        # an event that queue never holds
        document = tmp_path / "asyncapi.json"
        fleet_asyncapi(REFERENCE, document, "--format", "json")
        broken = json.loads(document.read_text())
        receive = broken["operations"]["worker.inventory.receive"]
        receive["messages"].append(
            {"$ref": "#/channels/exchange.inventory/messages/StockReserved.v1"}
        )
        document.write_text(json.dumps(broken))
        # When it is parsed
        report = parse(parser, document)
        # Then the parser says so, as an error
        codes = [d["code"] for d in errors(report)]
        assert "asyncapi3-operation-messages-from-referred-channel" in codes
