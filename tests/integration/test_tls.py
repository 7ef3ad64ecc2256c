"""Optional TLS on floodgated's listener (issue 13, item 2), with a certificate the test makes
with openssl."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import subprocess

import pytest

from harness import DEMO_DEPLOYMENT, free_port, wait_until

OPENSSL = shutil.which("openssl")


def make_cert(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def https(port, cafile, method, path, body=None, headers=None, tls_version=None):
    ctx = ssl.create_default_context(cafile=str(cafile))
    if tls_version is not None:
        ctx.minimum_version = ctx.maximum_version = tls_version
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed (install-deps.sh does)")
def test_https_listener(floodgated_bin, fake, tmp_path):
    cert, key = make_cert(tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOODGATE_", "PREFECT_"))}
    log = open(tmp_path / "fg.log", "wb")
    proc = subprocess.Popen([str(floodgated_bin), "--listen", f"127.0.0.1:{port}", "--db",
                             f"sqlite:///{tmp_path / 'fg.db'}", "--prefect-api-url", fake.api_url,
                             "--tls-cert", str(cert), "--tls-key", str(key)],
                            stdout=log, stderr=log, env=env)
    try:
        def up():
            try:
                return https(port, cert, "GET", "/healthz")[0] == 200
            except (OSError, ssl.SSLError):
                return False

        wait_until(up, 15)
        own = f"https://127.0.0.1:{port}"
        body = json.dumps({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{}]}).encode()
        status, headers, answer = https(port, cert, "POST", "/v1/batches", body,
                                        {"Content-Type": "application/json", "Origin": own})
        assert status == 201, answer
        assert headers["x-content-type-options"] == "nosniff"
        wait_until(lambda: fake.stats()["runs"] == 1, 20)
        # Plain http on the same port gets no answer.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with pytest.raises((http.client.HTTPException, OSError)):
            conn.request("GET", "/healthz")
            conn.getresponse().read()
        conn.close()
        # TLS 1.1 and older are refused.
        with pytest.raises((ssl.SSLError, OSError)):
            https(port, cert, "GET", "/healthz", tls_version=ssl.TLSVersion.TLSv1_1)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(10)
        log.close()


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed (install-deps.sh does)")
def test_bad_tls_files_stop_the_start(floodgated_bin, fake, tmp_path):
    cert, key = make_cert(tmp_path)
    base = [str(floodgated_bin), "--listen", f"127.0.0.1:{free_port()}", "--db",
            f"sqlite:///{tmp_path / 'fg.db'}", "--prefect-api-url", fake.api_url]
    r = subprocess.run(base + ["--tls-cert", str(cert)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "--tls-key" in r.stderr, r.stderr
    r = subprocess.run(base + ["--tls-cert", str(cert), "--tls-key", str(tmp_path / "nope.pem")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "cannot listen" in r.stderr, r.stderr
