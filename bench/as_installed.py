"""Run ``campus-gateway`` as ``scripts/install.sh`` installs it, from the dev venv.

The benches run from ``.venv``, which ``scripts/bootstrap.sh`` fills with the
project *and* its dev tools (``.[dev]``: pytest, mypy, import-linter, …). Some
runtime libraries import an optional package when it happens to be installed:
structlog imports ``rich`` (which import-linter needs) for pretty tracebacks,
about 4.6 MiB of resident memory. A school's box runs the service from the venv
``scripts/install.sh`` makes with ``pip install .``, where none of those exist,
so a memory figure taken with them measures a gateway nobody runs.

:func:`dev_only_modules` (run by the bench, not by the gateway) lists the
top-level modules of every distribution in this venv outside the runtime
dependency closure of ``campus-gateway`` (``[project] dependencies``, markers
evaluated with no extra). ``python bench/as_installed.py <modules> <cli args…>``
then runs ``gateway.cli`` with those modules hidden: importing one raises
``ModuleNotFoundError``, exactly as where they are not installed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PROJECT = "campus-gateway"
REPO = Path(__file__).resolve().parent.parent


def dev_only_modules() -> list[str]:
    """Top-level module names of the distributions the project does not need at runtime."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    needed: set[str] = set()
    todo = [PROJECT]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in needed:
            continue
        needed.add(name)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return sorted(
        module
        for module, dists in metadata.packages_distributions().items()
        if not any(canonicalize_name(d) in needed for d in dists)
    )


class _Hidden(importlib.abc.MetaPathFinder):
    """Finds nothing for the hidden top-level modules, and stops the search there."""

    def __init__(self, hidden: set[str]) -> None:
        self.hidden = hidden

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in self.hidden:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def main() -> None:
    hidden = {m for m in sys.argv[1].split(",") if m}
    sys.meta_path.insert(0, _Hidden(hidden))
    sys.path[0] = str(REPO)  # this checkout's gateway, as ``python -m gateway.cli`` from it
    sys.argv = ["campus-gateway", *sys.argv[2:]]
    runpy.run_module("gateway.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
