"""Hostile configuration files (hypothesis): a valid config or a ConfigError naming the
file and a line within it; never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.root import load_config
from gateway.errors import ConfigError
from tests.helpers import REPO_ROOT

DEMO = (REPO_ROOT / "config" / "demo.toml").read_text(encoding="utf-8")
LINES = DEMO.splitlines()
ASSIGNMENTS = [i for i, line in enumerate(LINES) if " = " in line and not line.startswith("#")]

toml_values = st.recursive(
    st.integers(-(2**70), 2**70).map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.booleans().map(lambda b: "true" if b else "false")
    | st.text(max_size=20).map(json.dumps),
    lambda inner: st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
    | st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), inner, max_size=3).map(
        lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}"
    ),
    max_leaves=6,
)


def _load(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gateway.toml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path)
        except ConfigError as exc:
            assert exc.file == str(path) and str(exc).startswith(str(path))
            assert exc.line is None or 1 <= exc.line <= len(text.splitlines()) + 1


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ASSIGNMENTS), toml_values)
def test_any_value_anywhere_gives_a_config_or_a_config_error(index: int, value: str) -> None:
    lines = list(LINES)
    key = lines[index].split(" = ", 1)[0]
    lines[index] = f"{key} = {value}"
    _load("\n".join(lines) + "\n")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_a_config_or_a_config_error(text: str) -> None:
    _load(text)
