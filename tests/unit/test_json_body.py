"""Request bodies whose identifier lists polars encodes are the JSON the same lists make through json.dumps."""

from __future__ import annotations

import hashlib
import json

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.batching import Batch
from pipeline.config import AudienceImportDestination
from pipeline.endpoints.audience_import import AudienceImport
from pipeline.http.json_body import JsonArray, encode_json


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.text(), st.text(alphabet=st.characters(max_codepoint=127))), max_size=30),
       account=st.text(max_size=10))
def test_any_strings_encode_to_the_bytes_json_dumps_makes(values: list[str | None], account: str) -> None:
    as_list = {"accountId": account, "ids": values, "n": 3, "flag": True}
    as_series = {**as_list, "ids": JsonArray(pl.Series(values, dtype=pl.String))}
    assert encode_json(as_series) == json.dumps(as_list, separators=(",", ":")).encode()


def test_other_types_and_keys_go_through_json_dumps() -> None:
    floats = [1.5, float("nan"), None]
    assert encode_json({"x": JsonArray(pl.Series(floats))}) == json.dumps({"x": floats}, separators=(",", ":")).encode()
    assert encode_json({"x": JsonArray(pl.Series(["a"], dtype=pl.Categorical))}) == b'{"x":["a"]}'
    assert encode_json({1: JsonArray(pl.Series(["a"])), None: "b"}) == b'{"1":["a"],"null":"b"}'


def test_wire_identifiers_encode_to_exactly_the_bytes_json_dumps_makes() -> None:
    hexes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(1000)]
    body = {"action": "include", "accountId": "123", "sha256s": hexes}
    expected = json.dumps(body, separators=(",", ":")).encode()
    assert encode_json({**body, "sha256s": JsonArray(pl.Series(hexes))}) == expected
    assert encode_json(body) == expected  # no Series: plain json.dumps


def test_an_audience_request_from_a_series_batch_is_the_one_from_a_list_batch() -> None:
    destination = AudienceImportDestination.model_validate({
        "endpoint": "audience_import", "base_url": "https://data.rokt.com", "account_id": "123456789", "action": "include",
        "list": "US_Customers",
        "credentials": {"public_key": "rpub-sandbox", "secret_key": "rsec-sandbox"},
    })
    endpoint = AudienceImport(destination, "email")
    hexes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5)]
    from_list = endpoint.build_request(Batch(0, hexes))
    from_series = endpoint.build_request(Batch(0, pl.Series("wire", hexes)))
    assert encode_json(from_series.json) == encode_json(from_list.json)
    assert json.loads(encode_json(from_series.json))["sha256s"] == hexes


def test_an_empty_series_is_an_empty_array() -> None:
    assert encode_json({"ids": JsonArray(pl.Series([], dtype=pl.String))}) == b'{"ids":[]}'


def test_a_json_array_is_encoded_once_and_spliced_as_it_is() -> None:
    hexes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(3)]
    batch = Batch(0, pl.Series("wire", hexes))
    array = batch.json_identifiers
    assert array is batch.json_identifiers  # one per batch, so the first body can be encoded ahead of its request
    expected = json.dumps({"a": 1, "ids": hexes}, separators=(",", ":")).encode()
    assert encode_json({"a": 1, "ids": array}) == expected
    assert array.encoded() is array.encoded()  # kept, not made again
    assert encode_json({"a": 1, "ids": JsonArray(hexes)}) == expected  # from a list, too
    assert encode_json({1: JsonArray(["x"])}) == b'{"1":["x"]}'  # non-string keys: json.dumps of its values
