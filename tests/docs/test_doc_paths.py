"""The README and the pages in ``docs/`` name only repository paths that exist.

A path here is backticked text that looks like a file or folder of the repository:
one word (no spaces), with a ``/`` or a file extension, and not a topic
(``campus/…``, ``…/ack``), a placeholder (``<id>``), a glob, an absolute path on
the target box (``/etc/…``), the team's folder beside the clone (``../shared``) or
something the scripts create (``.venv/``, ``var/``). A path may be relative to
the folder named first in its table row, list item or paragraph
(``| `gateway/events/` | `model.py` |``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

_BACKTICKED = re.compile(r"`([^`\n]+)`")
_EXTENSIONS = (".py", ".toml", ".sh", ".md", ".json", ".yaml", ".yml", ".service", ".png", ".txt")
_NOT_REPOSITORY = ("../", "/", "~", ".venv", "var/", "campus/", "http:", "https:", "…")


def documents() -> list[Path]:
    """README.md and every Markdown page under ``docs/``."""
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


def repository_paths(text: str) -> set[str]:
    """The backticked repository paths of a Markdown text."""
    found: set[str] = set()
    for line in text.splitlines():
        found.update(_paths_of_line(line))
    return found


def _paths_of_line(line: str) -> list[str]:
    paths: list[str] = []
    for token in _BACKTICKED.findall(line):
        if any(c in token for c in " <>*…|{}$=") or token.startswith(_NOT_REPOSITORY):
            continue
        if "/" in token or token.endswith(_EXTENSIONS):
            paths.append(token)
    return paths


def missing_paths(text: str, root: Path) -> list[str]:
    """Paths of ``text`` that exist neither in ``root`` nor in the first folder of their block.

    A block is a table row, a list item or a paragraph: a blank line, a heading, a
    row or an item starts a new one.
    """
    missing: set[str] = set()
    folder: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("|", "#", "* ", "- ")) or stripped[:1].isdigit():
            folder = None
        paths = _paths_of_line(line)
        if folder is None:
            folder = next((p for p in paths if p.endswith("/") and (root / p).is_dir()), None)
        for path in paths:
            if (root / path).exists() or (folder is not None and (root / folder / path).exists()):
                continue
            missing.add(path)
    return sorted(missing)


def test_the_path_finder_finds_paths_and_skips_topics() -> None:
    text = (
        "see `gateway/daemon.py`, `docs/`, `README.md` and `scripts/test.sh`; "
        "not `…/ack`, `campus/v1/<site>`, `../shared/realdata`, `/etc/x`, "
        "`.venv/bin`, `source .venv/bin/activate` nor `alarm.panic`"
    )
    assert repository_paths(text) == {
        "gateway/daemon.py",
        "docs/",
        "README.md",
        "scripts/test.sh",
    }


def test_a_path_may_be_relative_to_the_folder_first_in_its_block(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").touch()
    text = "| `pkg/` | `mod.py` |\n| `other/` | `mod.py` |\n\n`gone.py`\n\n* `pkg/` and\n  `mod.py`"
    assert missing_paths(text, tmp_path) == ["gone.py", "mod.py", "other/"]


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_backticked_path_exists(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    missing = missing_paths(text, REPO_ROOT)
    assert not missing, f"{document.name} names paths that do not exist: {missing}"
