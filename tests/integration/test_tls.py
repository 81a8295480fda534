"""TLS verification is on for every https base URL and cannot be silently turned off."""

from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading

import pytest

from tests.conftest import ROOT, audience_job, read_summary, run_cli, write_job


@pytest.fixture()
def self_signed_https(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://localhost:{server.server_address[1]}", hits
    server.shutdown()


@pytest.mark.parametrize("env_override", [{}, {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": "", "PYTHONHTTPSVERIFY": "0"}],
                         ids=["default", "env-tries-to-disable"])
def test_an_untrusted_certificate_is_refused(tmp_path, sandbox_env, self_signed_https, env_override) -> None:
    url, hits = self_signed_https
    job = audience_job(tmp_path, ROOT / "sample_data" / "customers.csv", base_url=url, limits={"batch_size": 50})
    done = run_cli("run", str(write_job(tmp_path, job)), env={**sandbox_env, **env_override})
    assert done.returncode == 1
    assert hits == []  # not one request body reached the server
    facts = read_summary(tmp_path / "out")
    assert "TLS error" in facts["stopped_reason"] and facts["identifiers_accepted"] == 0
    assert set(facts["batches_by_status"]) <= {"rejected", "not_sent"} and sum(facts["batches_by_status"].values()) == 4
