"""`fleet new`: a project a team can commit, from the templates in `project/`.

Each ``*.tmpl`` file is written without its suffix, with ``$project`` (the
directory's name), ``$package`` (its Python package) and ``$fleet_requirement``
(how its pyproject depends on fleet) filled in; the ``package`` folder takes the
package's name, ``gitignore`` becomes ``.gitignore`` and ``github`` ``.github``.
The project's contracts are locked at once (``contracts.lock.json``).

The team's code lives in a package of its own (``shop/contracts/``,
``shop/workers/``): fleet's own top-level packages are named `contracts`,
`topology` and `workers`, so a project's folders of those names would shadow them.
"""

from __future__ import annotations

import importlib.metadata
import json
import keyword
import re
import subprocess
import sys
from pathlib import Path
from string import Template
from urllib.parse import unquote, urlsplit

TEMPLATES = Path(__file__).with_name("project")
#: What `fleet contracts lock` writes and `diff` reads (workers.cli.contracts).
LOCK_FILE = "contracts.lock.json"
_SUFFIX = ".tmpl"


class ScaffoldError(ValueError):
    """The project cannot be made there, or under that name."""


def package_name(directory: Path) -> str:
    """``my-shop`` → ``my_shop``: the directory's name as a Python package."""
    name = re.sub(r"\W+", "_", directory.name.lower()).strip("_")
    if not name:
        raise ScaffoldError(f"cannot make a package name of {directory.name!r}: pass --package")
    if name[0].isdigit():
        name = "_" + name
    return name


def check_package(name: str) -> None:
    """Raise ScaffoldError unless `name` is a package name that shadows nothing of fleet's."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is not a Python package name")
    if name in ("contracts", "topology", "workers", "tests"):
        raise ScaffoldError(f"{name!r} would shadow fleet's own package {name!r}: pick another")


def fleet_requirement() -> str:
    """How a new project depends on fleet: the local checkout this fleet runs from, when
    it was installed from one, else the version on the package index."""
    distribution = importlib.metadata.distribution("fleet")
    direct = distribution.read_text("direct_url.json")
    if direct:
        url = json.loads(direct).get("url", "")
        if url.startswith("file://") and Path(unquote(urlsplit(url).path)).is_dir():
            return f"fleet @ {url}"
    return f"fleet>={distribution.version}"


def create(directory: Path, package: str | None = None) -> list[Path]:
    """Write a new project into `directory` (missing or empty); the files written.

    Raises:
        ScaffoldError: the directory holds files, or the package name is unusable.
    """
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ScaffoldError(f"{directory} exists and is not empty: name a new directory")
    package = package or package_name(directory)
    check_package(package)
    values = {
        "project": directory.resolve().name,
        "package": package,
        "fleet_requirement": fleet_requirement(),
    }
    written = []
    for template in sorted(TEMPLATES.rglob("*" + _SUFFIX)):
        relative = template.relative_to(TEMPLATES)
        parts = [package if part == "package" else part for part in relative.parts]
        parts[-1] = parts[-1].removesuffix(_SUFFIX)
        if parts[-1] == "gitignore":
            parts[-1] = ".gitignore"
        if parts[0] == "github":
            parts[0] = ".github"
        target = directory.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template(template.read_text()).substitute(values))
        written.append(target)
    written.append(_lock(directory, package))
    return written


def _lock(directory: Path, package: str) -> Path:
    """The new project's contracts.lock.json, so its first `fleet contracts diff` passes."""
    script = (
        "import sys; from contracts.compat import dumps, lock; "
        "from workers.project import exposed_contracts; "
        f"import {package}.contracts as m; "
        "sys.stdout.write(dumps(lock(exposed_contracts(vars(m).values()))))"
    )
    made = subprocess.run(
        [sys.executable, "-c", script], cwd=directory, capture_output=True, text=True, timeout=60
    )
    if made.returncode != 0:
        raise ScaffoldError(f"cannot lock the new project's contracts: {made.stderr.strip()}")
    target = directory / LOCK_FILE
    target.write_text(made.stdout)
    return target
