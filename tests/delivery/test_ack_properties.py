"""Hostile acks (hypothesis): whatever arrives on ``<prefix>/ack``, the uplink gets a list of
event ids (strings) or nothing; it never raises, so one bad ack cannot end a session."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.delivery.acks import parse_ack
from tests.hypothesis_support import json_values, nested_json

acks = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(st.sampled_from(["ids", "id", "x"]), json_values(), max_size=3).map(
        lambda d: json.dumps(d).encode()
    ),
    st.lists(st.text(max_size=30), max_size=5).map(lambda ids: json.dumps({"ids": ids}).encode()),
    nested_json(b'{"ids":', b"}"),
)


@settings(max_examples=300, deadline=None)
@given(acks)
def test_any_ack_payload_gives_string_ids_or_none(payload: bytes) -> None:
    ids = parse_ack(payload)
    assert isinstance(ids, list) and all(isinstance(i, str) for i in ids)
    if ids:  # accepted only as sent: the object's "ids", all strings, in order
        assert json.loads(payload)["ids"] == ids
