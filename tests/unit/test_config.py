"""Every config mistake is one clear message naming the key; secrets never show."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_job
from pipeline.errors import ConfigError
from tests.conftest import audience_job, write_job


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROKT_SANDBOX_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ROKT_PUBLIC_KEY", "rpub-SECRET-PUBLIC")
    monkeypatch.setenv("ROKT_SECRET_KEY", "rsec-VERY-SECRET")


def load(tmp_path: Path, job: dict) -> object:
    return load_job(write_job(tmp_path, job))


def error_of(tmp_path: Path, job: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, job)
    return str(caught.value)


def test_a_valid_job_loads_with_contract_defaults(tmp_path: Path) -> None:
    job = load(tmp_path, audience_job(tmp_path, "x.csv"))
    assert job.destination.effective_limits.batch_size == 100_000
    assert job.destination.effective_limits.requests_per_second == 4
    assert job.destination.send == "sha256"
    assert "VERY-SECRET" not in repr(job) and "VERY-SECRET" not in str(job.model_dump())


def test_unknown_key_is_named(tmp_path: Path) -> None:
    job = audience_job(tmp_path, "x.csv")
    job["destination"]["acount_id"] = "1"
    assert "destination.acount_id: unknown key" in error_of(tmp_path, job)


def test_wrong_endpoint_lists_the_known_ones(tmp_path: Path) -> None:
    message = error_of(tmp_path, audience_job(tmp_path, "x.csv", endpoint="audience_imports"))
    assert "destination: unknown endpoint" in message and "'audience_import'" in message


def test_batch_size_above_documented_maximum(tmp_path: Path) -> None:
    message = error_of(tmp_path, audience_job(tmp_path, "x.csv", limits={"batch_size": 200_000}))
    assert "limits.batch_size: 200000 is above the documented maximum of 100000" in message


def test_unset_environment_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROKT_SECRET_KEY")
    message = error_of(tmp_path, audience_job(tmp_path, "x.csv"))
    assert message == "destination.credentials.secret_key: environment variable ROKT_SECRET_KEY is not set"


def test_invalid_action_does_not_echo_secrets(tmp_path: Path) -> None:
    message = error_of(tmp_path, audience_job(tmp_path, "x.csv", action="add"))
    assert "destination.audience_import.action" not in message and "destination.action" in message
    assert "SECRET" not in message


def test_both_identifier_columns(tmp_path: Path) -> None:
    job = audience_job(tmp_path, "x.csv", columns={"email": "e", "sha256": "h"})
    assert "map either email or sha256, not several" in error_of(tmp_path, job)


def test_sending_emails_needs_raw_emails(tmp_path: Path) -> None:
    job = audience_job(tmp_path, "x.csv", columns={"sha256": "h"}, send="email")
    assert "destination.send: email needs a raw email column" in error_of(tmp_path, job)


def test_plain_http_only_on_loopback(tmp_path: Path) -> None:
    message = error_of(tmp_path, audience_job(tmp_path, "x.csv", base_url="http://data.rokt.com"))
    assert "plain http is allowed only for a loopback sandbox" in message


@pytest.mark.parametrize("host", [
    "localhost.evil.com", "127.0.0.1.nip.io", "127.0.0.1.evil.com", "evil-localhost", "localhost-evil.com",
    "my.localhost.evil", "0.0.0.0", "10.0.0.1", "169.254.169.254", "[::ffff:10.0.0.1]", "[fe80::1]",
])
def test_plain_http_is_refused_for_hosts_that_only_look_like_loopback(tmp_path: Path, host: str) -> None:
    message = error_of(tmp_path, audience_job(tmp_path, "x.csv", base_url=f"http://{host}:8787"))
    assert "plain http is allowed only for a loopback sandbox" in message


def test_a_base_url_with_credentials_in_it_is_refused_without_quoting_it(tmp_path: Path) -> None:
    message = error_of(tmp_path, audience_job(tmp_path, "x.csv", base_url="https://user:s3cret@data.rokt.com"))
    assert "must not hold a user name or password" in message and "s3cret" not in message


def test_a_base_url_that_is_not_a_url_is_refused_without_quoting_it(tmp_path: Path) -> None:
    message = error_of(tmp_path, audience_job(tmp_path, "x.csv", base_url="rsec-not-a-url-secret"))
    assert "must be an http(s) URL" in message and "rsec-not-a-url-secret" not in message


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.10.20.30", "[::1]"])
def test_plain_http_is_allowed_for_a_loopback_sandbox(tmp_path: Path, host: str) -> None:
    job = load(tmp_path, audience_job(tmp_path, "x.csv", base_url=f"http://{host}:8787"))
    assert job.destination.url == f"http://{host}:8787"


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="job file not found"):
        load_job(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("job: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_job(tmp_path / "bad.yaml")


@pytest.mark.parametrize(("first_row", "secret"), [
    ("jane.doe@example.com,+14155550101", "4155550101"),
    ("NETWORK_OPT_OUT,,415.555.0101", "555.0101"),
    ("NETWORK_OPT_OUT,,+44 20 7946 0958", "7946"),
    ("NETWORK_OPT_OUT,,(415) 555/0101", "555/0101"),
])
def test_a_headerless_file_read_with_a_header_never_echoes_its_first_row(tmp_path, first_row, secret) -> None:
    from pipeline.errors import InputError
    from pipeline.sources.local import open_local_source

    path = tmp_path / "export.csv"
    path.write_text(f"{first_row}\njohn@example.com,x,+14155550102\n")
    with pytest.raises(InputError) as raised:
        open_local_source(str(path), None, {"email": "email"}, delimiter=",", has_header=True)
    message = str(raised.value)
    assert secret not in message and "jane.doe@example.com" not in message
    assert "has_header: false" in message
