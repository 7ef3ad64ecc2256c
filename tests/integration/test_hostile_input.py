"""Hostile requests through the real listener (issue 11): none may kill, fool or bloat
floodgated. Each test names the attack it replays."""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time

import pytest

from harness import DEMO_DEPLOYMENT, free_port, parse_metrics, raw_request, wait_until

JSON = {"Content-Type": "application/json"}


def submit_body(**kw):
    b = {"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{"parameters": {"x": 1}}]}
    b.update(kw)
    return b


def problem_of(r, status, field=None):
    assert r.status == status, r
    assert r.headers.get("content-type", "").startswith("application/problem+json"), r.headers
    p = json.loads(r.body)
    if field is not None:
        assert p.get("field", "").startswith(field), p
    return p


def nothing_created(fg, fake):
    r = raw_request(fg.client.base, "GET", "/v1/batches")
    assert r.status == 200, r
    assert json.loads(r.body)["batches"] == []
    assert fake.stats()["runs"] == 0


def healthy(fg):
    assert fg.running, "floodgated died"
    assert raw_request(fg.client.base, "GET", "/healthz").status == 200


def post_raw(fg, body: bytes, headers=None, path="/v1/batches", method="POST"):
    return raw_request(fg.client.base, method, path, body, dict(JSON, **(headers or {})), timeout=60)


# --------------------------------------------------------------------------------------------
# 1. Nesting: refused while parsing, naming the field; the service stays up

@pytest.mark.parametrize("where", ["parameters", "job_variables"])
@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deep_nesting_inside_a_run_is_400_naming_the_field(fg, fake, where, opener):
    nested = (opener * 100000).encode()
    body = (b'{"deployment": "' + DEMO_DEPLOYMENT.encode() + b'", "runs": [{"' + where.encode() +
            b'": ' + nested + b"}]}")
    p = problem_of(post_raw(fg, body), 400, f"runs[0].{where}")
    assert "--max-json-depth" in p["detail"]
    healthy(fg)
    nothing_created(fg, fake)


def test_deep_nesting_everywhere_else_is_400(fg, fake):
    for body in (b"[" * 200000, b'{"deployment": "a/b", "limits": ' + b"[" * 200000,
                 b'{"runs": [' + b"[" * 200000):
        problem_of(post_raw(fg, body), 400)
    bid = fg.client.submit(submit_body())["id"]
    for path, method in ((f"/v1/batches/{bid}", "PATCH"), (f"/v1/batches/{bid}/cancel", "POST")):
        problem_of(post_raw(fg, b'{"x": ' + b"[" * 100000, path=path, method=method), 400)
    healthy(fg)


def test_depth_limit_is_a_flag(start_floodgated, fake):
    fg = start_floodgated("--max-json-depth", "6")
    ok = submit_body(runs=[{"parameters": {"a": [[1]]}}])
    assert fg.client.request("POST", "/v1/batches", ok).status == 201
    deeper = submit_body(runs=[{"parameters": {"a": [[[1]]]}}])
    problem_of(fg.client.request("POST", "/v1/batches", deeper), 400, "runs[0].parameters.a")


# --------------------------------------------------------------------------------------------
# 2. Cross-origin requests, DNS rebinding, headers

@pytest.mark.parametrize("ctype", [None, "", "text/plain; charset=json",
                                   "application/x-www-form-urlencoded; a=json",
                                   "multipart/form-data; boundary=json", "application/json; a=b",
                                   "application/json; charset=latin1", "text/json"])
def test_only_application_json_is_accepted(fg, fake, ctype):
    body = json.dumps(submit_body()).encode()
    headers = {} if ctype is None else {"Content-Type": ctype}
    r = raw_request(fg.client.base, "POST", "/v1/batches", body, headers)
    problem_of(r, 415)
    nothing_created(fg, fake)


def test_application_json_with_utf8_charset_is_accepted(fg, fake):
    r = post_raw(fg, json.dumps(submit_body()).encode(),
                 {"Content-Type": "application/json; charset=UTF-8"})
    assert r.status == 201, r


def test_json_endpoints_other_than_submit_need_application_json(fg, fake):
    bid = fg.client.submit(submit_body())["id"]
    r = raw_request(fg.client.base, "PATCH", f"/v1/batches/{bid}", b'{"priority": 3}',
                    {"Content-Type": "text/plain"})
    problem_of(r, 415)
    r = raw_request(fg.client.base, "POST", f"/v1/batches/{bid}/cancel", b"{}",
                    {"Content-Type": "text/plain"})
    problem_of(r, 415)
    # An empty control body needs no Content-Type (as before).
    r = raw_request(fg.client.base, "POST", f"/v1/batches/{bid}/pause", None, {})
    assert r.status in (200, 409), r


@pytest.mark.parametrize("headers", [
    {"Origin": "http://127.0.0.1:1"},
    {"Origin": "null"},
    {"Origin": "http://evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
], ids=["other-port", "null", "other-site", "fetch-site-cross", "fetch-site-same"])
def test_foreign_origins_cannot_change_state(fg, fake, headers):
    bid = fg.client.submit(submit_body())["id"]
    problem_of(post_raw(fg, json.dumps(submit_body()).encode(), headers), 403, "Origin")
    problem_of(post_raw(fg, b'{"priority": 3}', headers, f"/v1/batches/{bid}", "PATCH"), 403)
    for action in ("cancel", "pause", "resume", "redrive"):
        problem_of(post_raw(fg, b"", headers, f"/v1/batches/{bid}/{action}"), 403)
    # Reading is fine (the browser's same-origin policy keeps the answer from the page).
    r = raw_request(fg.client.base, "GET", f"/v1/batches/{bid}", None, headers)
    assert r.status == 200, r
    assert len(json.loads(raw_request(fg.client.base, "GET", "/v1/batches").body)["batches"]) == 1


def test_own_and_allowed_origins_can_change_state(start_floodgated, fake):
    fg = start_floodgated("--allowed-origins", "https://ui.example.com")
    own = f"http://127.0.0.1:{fg.port}"
    assert post_raw(fg, json.dumps(submit_body()).encode(), {"Origin": own}).status == 201
    assert post_raw(fg, json.dumps(submit_body()).encode(),
                    {"Origin": "https://ui.example.com"}).status == 201
    problem_of(post_raw(fg, json.dumps(submit_body()).encode(),
                        {"Origin": "https://other.example.com"}), 403)


def test_foreign_host_is_refused_everywhere(start_floodgated, fake):
    fg = start_floodgated("--allowed-hosts", "floodgate.internal,.svc.local")
    port = fg.port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.nip.io:{port}"):
        for method, path in (("GET", "/v1/batches"), ("GET", "/"), ("GET", "/metrics"),
                             ("POST", "/v1/batches")):
            body = json.dumps(submit_body()).encode() if method == "POST" else None
            r = raw_request(fg.client.base, method, path, body, dict(JSON, Host=host))
            problem_of(r, 403, "Host")
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}",
                 f"floodgate.internal:{port}", f"fg.ns.svc.local:{port}"):
        r = raw_request(fg.client.base, "GET", "/v1/batches", None, {"Host": host})
        assert r.status == 200, (host, r)
    nothing_created(fg, fake)


def test_every_answer_says_nosniff(start_floodgated, fake):
    fg = start_floodgated("--max-body-bytes", "2048")
    base = fg.client.base
    answers = [raw_request(base, "GET", "/"), raw_request(base, "GET", "/healthz"),
               raw_request(base, "GET", "/metrics"), raw_request(base, "GET", "/nope"),
               raw_request(base, "DELETE", "/v1/batches"),
               raw_request(base, "POST", "/v1/batches", b"x" * 4096, JSON),
               post_raw(fg, json.dumps(submit_body()).encode())]
    assert [a.status for a in answers] == [200, 200, 200, 404, 405, 413, 201]
    for a in answers:
        assert a.headers.get("x-content-type-options") == "nosniff", a


def test_trace_is_405_and_options_grants_nothing(fg, fake):
    base = fg.client.base
    r = raw_request(base, "TRACE", "/v1/batches", None, {"Cookie": "session=secret-cookie"})
    problem_of(r, 405)
    assert b"secret-cookie" not in r.body
    assert r.headers["allow"] == "GET, POST"
    r = raw_request(base, "OPTIONS", "/v1/batches", None,
                    {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type"})
    assert r.status == 204, r
    assert r.headers["allow"] == "GET, POST, OPTIONS"
    assert not any(k.startswith("access-control-") for k in r.headers), r.headers
    r = raw_request(base, "OPTIONS", "/v1/batches/x/cancel")
    assert r.headers["allow"] == "POST, OPTIONS"
    m = parse_metrics(fg.client.metrics())
    assert m.get('floodgate_api_requests_total{code="405",route="/v1/batches"}') == 1
    assert m.get('floodgate_api_requests_total{code="204",route="/v1/batches"}') == 1


# --------------------------------------------------------------------------------------------
# 4. Numbers reach Prefect exactly, or are refused

def test_parameters_reach_prefect_exactly(fg, fake):
    raw = (b'{"deployment": "' + DEMO_DEPLOYMENT.encode() + b'", "track": false, "runs": '
           b'[{"parameters": {"big": 9223372036854775807, "ubig": 18446744073709551615, '
           b'"neg": -9223372036854775808, "f": 0.1, "tiny": 5e-324, "s": "\\u00e9\\ud83d\\ude00"'
           b"}}]}")
    r = post_raw(fg, raw)
    assert r.status == 201, r
    wait_until(lambda: fake.stats()["runs"] == 1, 20)
    params = fake.runs()[0]["parameters"]
    assert params == {"big": 9223372036854775807, "ubig": 18446744073709551615,
                      "neg": -9223372036854775808, "f": 0.1, "tiny": 5e-324, "s": "é😀"}


@pytest.mark.parametrize("number", ["123456789012345678901234567890", "1e400", "-1e400",
                                    "1e-400", "3.14159265358979323846264338327950288"])
def test_numbers_that_would_change_are_400(fg, fake, number):
    raw = ('{"deployment": "%s", "runs": [{"parameters": {"n": %s}}]}'
           % (DEMO_DEPLOYMENT, number)).encode()
    p = problem_of(post_raw(fg, raw), 400, "runs[0].parameters.n")
    assert "64" in p["detail"], p
    nothing_created(fg, fake)


def test_out_of_range_number_anywhere_is_400_not_500(fg, fake):
    for raw in (b'{"deployment": "a/b", "priority": 1e400, "runs": [{}]}', b"1e400",
                b'{"deployment": "a/b", "runs": [{}], "limits": {"burst": -1e999}}'):
        problem_of(post_raw(fg, raw), 400)
    bid = fg.client.submit(submit_body())["id"]
    problem_of(post_raw(fg, b'{"priority": 1e400}', path=f"/v1/batches/{bid}", method="PATCH"),
               400, "priority")


@pytest.mark.parametrize("query", ["wait_s=nan", "wait_s=NaN", "wait_s=inf", "wait_s=0x10",
                                   "wait_s=-1", "wait_s=1e1", "wait_s=%201", "wait_s=",
                                   "after_version=-1", "after_version=0x1",
                                   "after_version=99999999999999999999", "after_version=1.5"])
def test_query_numbers_are_plain_decimals(fg, fake, query):
    bid = fg.client.submit(submit_body())["id"]
    problem_of(raw_request(fg.client.base, "GET", f"/v1/batches/{bid}?{query}"), 400,
               query.split("=")[0])


@pytest.mark.parametrize("query", ["limit=0x10", "limit=nan", "limit=+5", "limit=5.0",
                                   "limit=1e2", "after=-1", "after=0x1"])
def test_paging_numbers_are_plain_decimals(fg, fake, query):
    problem_of(raw_request(fg.client.base, "GET", f"/v1/batches?{query}"), 400,
               query.split("=")[0])


# --------------------------------------------------------------------------------------------
# 5. Framing and secrets

def send_raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, rest = out.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(rest) >= length[0]:
                    break
        return out


@pytest.mark.parametrize("lengths", [(5, 6), (2, 2), ("2, 2",), ("+2",), ("0x2",)])
def test_repeated_or_malformed_content_length_is_400(fg, fake, lengths):
    body = json.dumps(submit_body()).encode()
    head = b"POST /v1/batches HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    for n in lengths:
        head += b"Content-Length: %s\r\n" % str(n).encode()
    answer = send_raw(fg.port, head + b"\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"Content-Length" in answer
    healthy(fg)
    nothing_created(fg, fake)


def test_content_length_with_transfer_encoding_is_400(fg, fake):
    body = json.dumps(submit_body()).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    answer = send_raw(fg.port, b"POST /v1/batches HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(chunked) + chunked)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    healthy(fg)
    nothing_created(fg, fake)


def test_userinfo_in_the_prefect_url_is_never_shown(start_floodgated, fake):
    dead = free_port()  # nothing listens: every call to "Prefect" is a transport error
    fg = start_floodgated("--log-level", "debug",
                          prefect_api_url=f"http://alice:s3cr3t-pw@127.0.0.1:{dead}/api")
    bid = fg.client.submit(submit_body())["id"]
    wait_until(lambda: f"127.0.0.1:{dead}" in fg.log_path.read_text().split("floodgated started")[-1],
               30)
    # The whole log, the harness's own command line (which holds the URL) included.
    log = fg.log_path.read_text()
    seen = [log, fg.client.metrics()]
    for method, path in (("GET", f"/v1/batches/{bid}"), ("GET", f"/v1/batches/{bid}/runs"),
                         ("GET", "/readyz"), ("GET", "/v1/batches"), ("GET", "/")):
        seen.append(raw_request(fg.client.base, method, path).body.decode())
    for text in seen:
        assert "s3cr3t-pw" not in text
        assert "alice" not in text
    assert "***@127.0.0.1" in seen[0]


# --------------------------------------------------------------------------------------------
# 3. Memory per request is bounded

def rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


@pytest.mark.time_limit(120)
def test_a_16_mib_body_of_empty_runs_stays_within_a_few_times_its_size(fg, fake):
    body = b'{"deployment": "' + DEMO_DEPLOYMENT.encode() + b'", "runs": ['
    body += b",".join([b"{}"] * ((16 * 1024 * 1024 - 200) // 3)) + b"]}"
    assert len(body) <= 16 * 1024 * 1024
    before = rss_kb(fg.proc.pid, "VmHWM")
    problem_of(post_raw(fg, body), 422, "runs")
    peak = rss_kb(fg.proc.pid, "VmHWM")
    # Was 621 MB; the body itself is 16 MiB, and one copy of it sits in cpprest's buffers.
    assert (peak - before) * 1024 < 4 * len(body), (before, peak)
    healthy(fg)
    nothing_created(fg, fake)


@pytest.mark.time_limit(120)
def test_one_huge_run_is_refused_without_building_it(fg, fake):
    inner = b",".join([b"{}"] * (15 * 1024 * 1024 // 3))
    body = (b'{"deployment": "' + DEMO_DEPLOYMENT.encode() + b'", "runs": [{"parameters": {"a": ['
            + inner + b"]}}]}")
    before = rss_kb(fg.proc.pid, "VmHWM")
    problem_of(post_raw(fg, body), 400, "runs[0]")
    peak = rss_kb(fg.proc.pid, "VmHWM")
    assert (peak - before) * 1024 < 4 * len(body), (before, peak)
    healthy(fg)


def test_concurrent_large_bodies_beyond_the_budget_get_503(start_floodgated, fake):
    mib = 1024 * 1024
    fg = start_floodgated("--max-body-bytes", str(mib), "--max-parse-memory", str(3 * mib))
    # The first request declares a full-size body and sends it slowly: it holds the budget.
    def hold():
        h = socket.create_connection(("127.0.0.1", fg.port), timeout=30)
        h.sendall(b"POST /v1/batches HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n{" % mib)
        return h

    holder = hold()
    big = b'{"runs": [' + b" " * (mib - 20) + b"]}"
    answers = []

    def second_is_refused():
        nonlocal holder
        # On a busy machine the second request's head can be read first: it takes the room and
        # the holder is the one refused (it gets an answer). Then hold again and retry.
        if select.select([holder], [], [], 0)[0]:
            holder.close()
            holder = hold()
            time.sleep(0.2)
        r = post_raw(fg, big)
        answers.append(r)
        return r.status == 503

    try:
        wait_until(second_is_refused, 20)
        r = answers[-1]
        assert r.headers.get("retry-after") == "1", r.headers
        assert "--max-parse-memory" in json.loads(r.body)["detail"]
    finally:
        holder.close()
    # Once the holder is gone its share comes back.
    wait_until(lambda: post_raw(fg, json.dumps(submit_body()).encode()).status == 201, 20)
    healthy(fg)
