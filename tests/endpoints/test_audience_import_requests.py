"""Golden requests for the audience import endpoints, and the sandbox's enforcement of the contract."""

from __future__ import annotations

import base64
import json

import requests
from pydantic import SecretStr

from pipeline.batching import Batch
from pipeline.config import AudienceImportDestination, AudienceImportLegacyDestination
from pipeline.endpoints.audience_import import AudienceImport
from pipeline.http.json_body import encode_json

HELLO_HEX = "1753bdb368271a785887ddbfb926164f2f7c6a88f609c07ff0401c5572955206"


def v3(**overrides) -> AudienceImportDestination:
    fields = {
        "endpoint": "audience_import", "base_url": "https://data.rokt.com", "account_id": "123456789", "action": "include",
        "list": "US_Customers", "credentials": {"public_key": "rpub-sandbox", "secret_key": "rsec-sandbox"}, **overrides,
    }
    return AudienceImportDestination.model_validate(fields)


def test_v3_golden_request() -> None:
    endpoint = AudienceImport(v3(), "email")
    request = endpoint.build_request(Batch(0, [HELLO_HEX]))
    assert request.method == "POST" and request.url == "https://data.rokt.com/v3/import/suppression"
    assert json.loads(encode_json(request.json)) == {
        "action": "include", "accountId": "123456789", "list": "US_Customers", "sha256s": [HELLO_HEX]}
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"rpub-sandbox:rsec-sandbox").decode()
    assert request.headers["Content-Type"] == "application/json"
    assert endpoint.spec.retry_safe and endpoint.spec.wire_encoding == "hex"


def test_legacy_golden_request_with_emails() -> None:
    destination = AudienceImportLegacyDestination.model_validate({
        "endpoint": "audience_import_legacy", "base_url": "https://data.rokt.com", "action": "exclude", "send": "email",
        "credentials": {"api_key": SecretStr("legacy-key")},
    })
    request = AudienceImport(destination, "email").build_request(Batch(0, ["a@example.com"]))
    assert request.url == "https://data.rokt.com/api/1.0/import/suppression"
    assert encode_json(request.json) == b'{"action":"exclude","emails":["a@example.com"]}'
    assert request.headers["Authorization"] == "legacy-key"


def test_sandbox_enforces_the_contract(sandbox) -> None:
    sandbox.limits({"audience_import": {"requests_per_second": 1000, "concurrency": 4}})  # this test is about shapes
    url = f"{sandbox.url}/v3/import/suppression"
    auth = {"Authorization": "Basic " + base64.b64encode(b"rpub-sandbox:rsec-sandbox").decode()}

    def post(body, headers=auth):
        return requests.post(url, json=body, headers=headers, timeout=5).status_code

    good = {"accountId": "1", "action": "include", "sha256s": [HELLO_HEX]}
    assert post(good) == 201
    assert post(good, headers={"Authorization": "Basic " + base64.b64encode(b"rpub-x:rsec-y").decode()}) == 401
    assert post({**good, "sha256s": ["F1O9s2gnGnhYh92/uSYWTy98aoj2CcB/8EAcVXKVUgY="]}) == 400  # base64 is not hex
    assert post({**good, "emails": ["a@b.co"]}) == 400  # two identifier keys
    assert post({"accountId": "1", "sha256s": [HELLO_HEX]}) == 400  # no action
    assert post({"action": "include", "sha256s": [HELLO_HEX]}) == 400  # v3 needs accountId
    assert post({**good, "sha256s": [HELLO_HEX] * 100_001}) == 400
    assert [r["count"] for r in sandbox.state()["received"]] == [1]
