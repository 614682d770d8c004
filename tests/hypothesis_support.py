"""Strategies shared by the property-based tests (hypothesis) of hostile input."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(
    *, allow_nan: bool = True, max_leaves: int = 12, i_json: bool = False
) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars, lists and objects nested a few levels.

    ``i_json``: only what RFC 7493 I-JSON (so RFC 8785, so a signature) can carry:
    integers within ±(2^53 - 1), finite numbers.
    """
    limit = 2**53 - 1
    scalars = (
        st.none()
        | st.booleans()
        | (st.integers(-limit, limit) if i_json else st.integers())
        | st.floats(allow_nan=allow_nan and not i_json, allow_infinity=not i_json)
        | st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=max_leaves,
    )


def nested_json(prefix: bytes = b"", suffix: bytes = b"") -> st.SearchStrategy[bytes]:
    """Arrays nested up to 100,000 deep (a decoder's stack overflows long before)."""
    return st.integers(1, 100_000).map(lambda d: prefix + b"[" * d + b"]" * d + suffix)
