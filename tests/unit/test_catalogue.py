"""The contract catalogue (`workers.catalogue`): its model, its HTML, the manual's page
and `fleet contracts docs`."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import msgspec
import pytest
import structlog
from click.testing import CliRunner
from fulfilment import TOPOLOGY_FILE

import workers.cli.contracts  # noqa: F401  (adds the `contracts` group to `fleet`)
from contracts import Event, Registry, decode
from tests.fixtures import catalogue_fleet as fleet
from topology import loads
from workers.catalogue import Catalogue, ContractDoc, Party, build_catalogue
from workers.catalogue.render import render_markdown, render_page
from workers.cli import cli
from workers.flows import fleet_flows

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return build_catalogue(fleet.topology(), fleet.flows(), title="shop", version="1.0")


def contract(catalogue: Catalogue, name: str) -> ContractDoc:
    (found,) = [c for c in catalogue.contracts if c.name == name]
    return found


class Hostile(Event, frozen=True, kw_only=True):
    """Says <script>alert("docstring")</script> & more."""

    __routing_key__ = "hostile.said"

    tag: str = msgspec.field(name="<img src=x onerror=alert(1)>")
    text: str = "</code><script>alert('default')</script>"


def hostile_catalogue() -> Catalogue:
    """A catalogue of one contract whose docstring, field name and default are markup."""
    topology = loads("exchanges: {shop: {}}\n")
    registry = Registry()
    registry.register(Hostile)
    flows = fleet_flows(topology, {}, registry)
    return build_catalogue(topology, flows, title="<b>shop</b>", version="1")


class TestTheModel:
    def test_a_contracts_versions_are_listed_newest_first(self, catalogue: Catalogue) -> None:
        """SignedUp shows v2, then v1; faults come after the other contracts."""
        signed_up = contract(catalogue, "SignedUp")
        assert [v.version for v in signed_up.versions] == [2, 1]
        assert [c.name for c in catalogue.contracts] == [
            "Reminder",
            "SignedUp",
            "Welcomed",
            "Fault[SignedUp]",
        ]

    def test_each_version_says_what_changed_since_the_one_before(
        self, catalogue: Catalogue
    ) -> None:
        """v2 lists the fields added and changed from v1; v1, the first, lists none."""
        newest, first = contract(catalogue, "SignedUp").versions
        assert first.changes is None
        assert newest.previous == 1
        assert newest.changes is not None
        kinds = {(c.kind, c.path) for c in newest.changes}
        assert kinds == {("added", "address"), ("added", "tags"), ("changed", "plan")}

    def test_fields_carry_their_json_type_bounds_and_default(self, catalogue: Catalogue) -> None:
        """customer_id is a bounded string; plan an enum with a default; address a Struct."""
        fields = {f.name: f for f in contract(catalogue, "SignedUp").versions[0].fields}
        assert fields["customer_id"].type == "string"
        assert fields["customer_id"].required
        assert "at least 1 character" in fields["customer_id"].constraints
        assert "at most 255 characters" in fields["customer_id"].constraints
        assert fields["plan"].type == 'one of "free", "pro", "team"'
        assert fields["plan"].default == '"free"'
        assert fields["address"].type == "Address"
        assert fields["tags"].type == "tuple of string, integer"

    def test_nested_structs_are_described_with_their_fields(self, catalogue: Catalogue) -> None:
        """Address, which SignedUp v2 nests, gets its own table."""
        (address,) = contract(catalogue, "SignedUp").versions[0].structs
        assert address.name == "Address"
        assert address.description == "Where a customer lives."
        assert [f.name for f in address.fields] == ["city", "postcode"]
        assert "matches ^[0-9]{5}$" in address.fields[1].constraints

    def test_who_emits_and_consumes_each_version_comes_from_the_flows(
        self, catalogue: Catalogue
    ) -> None:
        """v1 is posted to the ingress and upcast for the worker; v2 is handled and sent
        to the webhook; Welcomed is terminal and answers the synchronous route."""
        newest, first = contract(catalogue, "SignedUp").versions
        assert first.emitted_by == (Party("ingress", "POST /signups", "to exchange shop (bearer)"),)
        assert first.consumed_by == (
            Party(
                "worker",
                "welcome",
                "from queue welcome, through an upcaster or downcaster to the version it handles",
            ),
        )
        assert [p.label for p in newest.consumed_by] == ["welcome", "crm webhook"]
        welcomed = contract(catalogue, "Welcomed").versions[0]
        assert welcomed.emitted_by == (
            Party(
                "worker", "welcome", "to exchange shop, as a terminal event (no consumer needed)"
            ),
        )
        assert welcomed.consumed_by == (
            Party("ingress", "POST /signups", "as its answer, from exchange shop"),
        )

    def test_a_fault_names_the_contract_it_announces(self, catalogue: Catalogue) -> None:
        """Fault[SignedUp] links back to SignedUp and says who announces it."""
        fault = contract(catalogue, "Fault[SignedUp]")
        assert fault.fault_of == "SignedUp"
        assert fault.versions[0].emitted_by == (
            Party("worker", "welcome", "to exchange shop, for each SignedUp it parks"),
        )

    def test_every_example_decodes_back_into_its_contract(self, catalogue: Catalogue) -> None:
        """Each version's example body is one its contract accepts."""
        types = {(t.__wire_name__, t.__version__): t for t in fleet.flows().contracts}
        for entry in catalogue.contracts:
            for version in entry.versions:
                assert version.example is not None, version.example_error
                decode(types[(entry.name, version.version)], version.example)


class TestTheHtml:
    def test_the_page_has_an_index_and_a_section_per_version(self, catalogue: Catalogue) -> None:
        """Each contract is in the index and has an anchored section per version."""
        page = render_page(catalogue)
        assert page.startswith("<!doctype html>")
        assert '<a href="#signedup">SignedUp</a>' in page
        assert 'id="signedup-v2"' in page
        assert 'id="signedup-v1"' in page
        assert "Changes from v1" in page

    def test_every_value_is_escaped(self) -> None:
        """A docstring, a field name, a default and the title that hold markup show as text."""
        page = render_page(hostile_catalogue())
        assert "<script>" not in page
        assert "<img" not in page
        assert "<b>shop</b>" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
        assert "&lt;script&gt;alert(&#34;docstring&#34;)&lt;/script&gt;" in page

    def test_the_markdown_has_a_heading_per_contract_and_escapes_it(
        self, catalogue: Catalogue
    ) -> None:
        """Headings are Markdown (the manual's table of contents), their text backslashed."""
        markdown = render_markdown(catalogue)
        assert "## SignedUp {: #signedup }" in markdown
        assert r"## Fault\[SignedUp\] {: #fault-signedup }" in markdown
        assert "\n\n\n" not in markdown.split("## SignedUp", 1)[1].split("## ", 1)[0]

    def test_the_markdown_escapes_every_value_too(self) -> None:
        """The manual's fragment escapes as the page does."""
        markdown = render_markdown(hostile_catalogue())
        assert "<script>" not in markdown
        assert "<img" not in markdown


@pytest.fixture
def _in_the_reference_project(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in the reference fleet's directory, its logging configuration restored after."""
    monkeypatch.chdir(TOPOLOGY_FILE.parent)
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def load_hook() -> ModuleType:
    """docs/hooks/catalogue.py, imported as MkDocs imports it (from its path)."""
    spec = importlib.util.spec_from_file_location(
        "catalogue_hook", ROOT / "docs/hooks/catalogue.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("_in_the_reference_project")
class TestTheReferenceFleetsCatalogue:
    def test_fleet_contracts_docs_writes_one_page(self, tmp_path: Path) -> None:
        """`fleet contracts docs --output DIR` writes DIR/index.html and says how many."""
        result = CliRunner().invoke(
            cli, ["--log-format", "json", "contracts", "docs", "--output", str(tmp_path / "c")]
        )
        assert result.exit_code == 0, result.output
        page = (tmp_path / "c" / "index.html").read_text()
        count = int(re.search(r": (\d+) contracts$", result.stdout.strip())[1])  # type: ignore[index]
        contracts = set(re.findall(r'<section class="version" id="([a-z0-9-]+)-v\d+"', page))
        assert len(contracts) == count
        # Every version of a contract has its section, newest first.
        assert page.index('id="orderplaced-v2"') < page.index('id="orderplaced-v1"')
        assert "POST /orders" in page

    def test_the_manuals_page_is_the_reference_fleets_catalogue(self) -> None:
        """The hook fills docs/catalogue.md's marker with every reference contract."""
        hook = load_hook()
        page = (ROOT / "docs" / hook.PAGE).read_text()
        assert hook.MARKER in page
        rendered = hook.render()
        assert "## OrderPlaced {: #orderplaced }" in rendered
        assert "<strong>POST /orders</strong> (ingress) to exchange orders (no auth)" in rendered
        example = re.search(
            r'id="orderplaced-v1".*?<pre><code class="language-json">(.*?)</code>',
            rendered,
            re.S,
        )
        assert example is not None
        body = json.loads(example[1].replace("&#34;", '"'))
        assert body["currency"] == "EUR"
