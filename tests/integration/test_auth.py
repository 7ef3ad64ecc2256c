"""API tokens (issue 13, item 1): bearer tokens with read/write scopes, 401/403, open health
endpoints, SIGHUP reload, the submitter's name on each batch, refusal to serve an open API
beyond loopback, and no secret in any log line, metric, page or answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness import DEMO_DEPLOYMENT, free_port, raw_request, wait_until

REPO = Path(__file__).resolve().parents[2]
WRITE = "w-" + "a1b2c3d4" * 4
READ = "r-" + "e5f6a7b8" * 4
NEW_WRITE = "n-" + "c9d0e1f2" * 4
WRONG = "x-" + "deadbeef" * 4
PREFECT_KEY = "pnu_" + "prefectkeysecret" * 2
TOKENS = f"# test tokens\nwrite ci-bot {WRITE}\nread grafana {READ}  # dashboards\n"


def body():
    return {"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{"parameters": {"x": 1}}]}


def call(fg, method, path, token=None, payload=None, headers=None):
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = None
    if payload is not None:
        data = json.dumps(payload).encode()
        h["Content-Type"] = "application/json"
    return raw_request(fg.client.base, method, path, data, h)


def start_with_tokens(start_floodgated, tmp_path, *args, text=TOKENS):
    path = tmp_path / "tokens.txt"
    path.write_text(text)
    # The harness's own health check sends no token: /healthz is open.
    return start_floodgated("--api-tokens-file", str(path), *args), path


def test_tokens_and_scopes(start_floodgated, fake, tmp_path):
    fg, _ = start_with_tokens(start_floodgated, tmp_path)
    r = call(fg, "GET", "/v1/batches")
    assert r.status == 401, r
    assert r.headers["www-authenticate"].startswith("Bearer"), r.headers
    r = call(fg, "GET", "/v1/batches", WRONG)
    assert r.status == 401 and 'error="invalid_token"' in r.headers["www-authenticate"], r
    r = call(fg, "GET", "/v1/batches", headers={"Authorization": f"Basic {WRITE}"})
    assert r.status == 401, r
    assert call(fg, "POST", "/v1/batches", None, body()).status == 401
    assert call(fg, "POST", "/v1/batches", READ, body()).status == 403
    r = call(fg, "POST", "/v1/batches", WRITE, body())
    assert r.status == 201, r
    bid = json.loads(r.body)["id"]
    assert call(fg, "GET", f"/v1/batches/{bid}", READ).status == 200
    assert call(fg, "GET", f"/v1/batches/{bid}/runs", READ).status == 200
    assert call(fg, "POST", f"/v1/batches/{bid}/pause", READ).status == 403
    assert call(fg, "POST", f"/v1/batches/{bid}/runs", READ, {"runs": [{}]}).status == 403
    assert call(fg, "POST", f"/v1/batches/{bid}/seal", READ).status == 403
    assert call(fg, "POST", f"/v1/batches/{bid}/runs", None, {"runs": [{}]}).status == 401
    assert call(fg, "PATCH", f"/v1/batches/{bid}", READ, {"priority": 2}).status == 403
    assert call(fg, "PATCH", f"/v1/batches/{bid}", WRITE, {"priority": 2}).status in (200, 409)
    # Health is open; metrics and the status page are not (without --public-status).
    assert call(fg, "GET", "/healthz").status == 200
    assert call(fg, "GET", "/readyz").status in (200, 503)
    assert call(fg, "GET", "/metrics").status == 401
    assert call(fg, "GET", "/").status == 401
    assert call(fg, "GET", "/metrics", READ).status == 200
    assert call(fg, "GET", "/", READ).status == 200
    assert fake.stats()["runs"] <= 1


def test_public_status_opens_metrics_and_the_page_only(start_floodgated, fake, tmp_path):
    fg, _ = start_with_tokens(start_floodgated, tmp_path, "--public-status", "true")
    assert call(fg, "GET", "/metrics").status == 200
    assert call(fg, "GET", "/").status == 200
    assert call(fg, "GET", "/v1/batches").status == 401


def test_batches_record_and_filter_by_submitter(start_floodgated, fake, tmp_path):
    text = TOKENS + f"write other-bot {NEW_WRITE}\n"
    fg, _ = start_with_tokens(start_floodgated, tmp_path, text=text)
    mine = [json.loads(call(fg, "POST", "/v1/batches", WRITE, body()).body)["id"] for _ in range(3)]
    theirs = json.loads(call(fg, "POST", "/v1/batches", NEW_WRITE, body()).body)["id"]
    r = call(fg, "GET", "/v1/batches?submitted_by=ci-bot", READ)
    assert [b["id"] for b in json.loads(r.body)["batches"]] == mine
    r = call(fg, "GET", "/v1/batches?submitted_by=other-bot", READ)
    assert [b["id"] for b in json.loads(r.body)["batches"]] == [theirs]
    # Paging within the filter.
    page = json.loads(call(fg, "GET", "/v1/batches?submitted_by=ci-bot&limit=2", READ).body)
    assert [b["id"] for b in page["batches"]] == mine[:2] and page["next"]
    rest = json.loads(call(fg, "GET", f"/v1/batches?submitted_by=ci-bot&limit=2&after={page['next']}",
                           READ).body)
    assert [b["id"] for b in rest["batches"]] == mine[2:] and rest["next"] is None
    # The name survives a restart (it is in the store).
    fg.restart(graceful=True)
    r = call(fg, "GET", "/v1/batches?submitted_by=other-bot", READ)
    assert [b["id"] for b in json.loads(r.body)["batches"]] == [theirs]


def test_sighup_reloads_tokens_without_dropping_batches(start_floodgated, fake, tmp_path):
    fg, path = start_with_tokens(start_floodgated, tmp_path)
    bid = json.loads(call(fg, "POST", "/v1/batches", WRITE, body()).body)["id"]
    path.write_text(f"write ci-bot {NEW_WRITE}\n")
    fg.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: call(fg, "GET", "/v1/batches", NEW_WRITE).status == 200, 10)
    assert call(fg, "GET", "/v1/batches", WRITE).status == 401
    assert call(fg, "GET", f"/v1/batches/{bid}", NEW_WRITE).status == 200
    # A broken file keeps the tokens in use.
    path.write_text("admin nobody short\n")
    fg.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "not reloaded" in fg.log_path.read_text(), 10)
    assert call(fg, "GET", "/v1/batches", NEW_WRITE).status == 200
    assert fg.running


def test_tokens_from_the_environment(start_floodgated, fake):
    fg = start_floodgated(env={"FLOODGATE_API_TOKENS": TOKENS})
    assert call(fg, "GET", "/v1/batches").status == 401
    assert call(fg, "GET", "/v1/batches", READ).status == 200


def test_open_api_beyond_loopback_needs_insecure_flag(floodgated_bin, fake, tmp_path):
    port = free_port()
    cmd = [str(floodgated_bin), "--listen", f"0.0.0.0:{port}", "--db",
           f"sqlite:///{tmp_path / 'x.db'}", "--prefect-api-url", fake.api_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOODGATE_", "PREFECT_"))}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode != 0
    assert "--insecure-no-auth" in r.stderr, r.stderr
    log = tmp_path / "insecure.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd + ["--insecure-no-auth", "true"], stdout=out, stderr=out,
                                env=env)
    try:
        wait_until(lambda: "insecure-no-auth" in log.read_text(), 15)
        wait_until(lambda: raw_request(f"http://127.0.0.1:{port}", "GET", "/healthz").status == 200,
                   15)
    finally:
        proc.kill()
        proc.wait(10)


def test_python_client_sends_floodgate_token(start_floodgated, fake, tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "client" / "python"))
    from floodgate import FloodgateClient, FloodgateError

    fg, _ = start_with_tokens(start_floodgated, tmp_path)
    monkeypatch.setenv("FLOODGATE_TOKEN", READ)
    client = FloodgateClient(fg.client.base, retries=0)
    assert FloodgateClient(fg.client.base, token=WRITE).submit(DEMO_DEPLOYMENT, runs=[{}])
    with pytest.raises(FloodgateError) as e:
        client.submit(DEMO_DEPLOYMENT, runs=[{}])
    assert "403" in str(e.value) or getattr(e.value, "status", None) == 403
    assert READ not in repr(client) and READ not in str(e.value)
    monkeypatch.delenv("FLOODGATE_TOKEN")
    with pytest.raises(FloodgateError):
        FloodgateClient(fg.client.base, retries=0).submit(DEMO_DEPLOYMENT, runs=[{}])


def test_no_secret_appears_anywhere(start_floodgated, fake, tmp_path):
    """Uses every secret (tokens right and wrong, the Prefect key, URL userinfo) and then looks
    for each in every log line, metric, page and answer."""
    url = fake.api_url.replace("http://", "http://bob:urlpassword1234@")
    fg, path = start_with_tokens(start_floodgated, tmp_path, "--prefect-api-key", PREFECT_KEY,
                                 "--log-level", "debug")
    fg.kill()
    fg.prefect_api_url = url
    fg.start()
    seen = []
    for token in (WRITE, READ, WRONG, None):
        r = call(fg, "POST", "/v1/batches", token, body())
        seen.append(r.body.decode())
        if r.status == 201:
            bid = json.loads(r.body)["id"]
    wait_until(lambda: fake.stats()["runs"] >= 1, 20)
    for token in (WRITE, READ, WRONG, None):
        for path_ in ("/v1/batches", f"/v1/batches/{bid}", f"/v1/batches/{bid}/runs", "/metrics",
                      "/", "/readyz", "/healthz", "/nope"):
            r = call(fg, "GET", path_, token)
            seen.append(r.body.decode(errors="replace"))
            seen.append(json.dumps(r.headers))
    fg.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "tokens reloaded" in fg.log_path.read_text(), 10)
    fg.terminate()
    # The whole log, the harness's own "==== start" lines (the command line) included.
    seen.append(fg.log_path.read_text())
    for secret in (WRITE, READ, WRONG, PREFECT_KEY, "urlpassword1234"):
        for text in seen:
            assert secret not in text, (secret, text[:300])


def test_requests_per_second_per_token(start_floodgated, fake, tmp_path):
    fg, _ = start_with_tokens(start_floodgated, tmp_path, "--token-rate", "1/min")
    # A burst of two, then nothing for a minute: the third request is refused...
    statuses = [call(fg, "GET", "/v1/batches", READ).status for _ in range(3)]
    assert statuses == [200, 200, 429], statuses
    r = call(fg, "GET", "/v1/batches", READ)
    assert r.status == 429 and int(r.headers["retry-after"]) >= 1, r
    assert "--token-rate" in json.loads(r.body)["detail"]
    # ...while another token has a bucket of its own, and health checks need none.
    assert call(fg, "GET", "/v1/batches", WRITE).status == 200
    assert call(fg, "GET", "/healthz").status == 200
