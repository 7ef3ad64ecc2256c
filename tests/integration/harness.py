"""Processes and HTTP helpers for floodgate's integration tests.

- `FakePrefect`: one fake-prefect process (tests/fake_prefect) on a free port.
- `Floodgated`: one floodgated process on a free port with its own SQLite db; can be killed
  (SIGKILL), stopped (SIGTERM) and restarted on the same db.
- `FloodgateClient`: the only way tests talk to floodgated; every answer is checked against
  proto/openapi.yaml before the test sees it.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from openapi_check import OpenApiChecker

FINAL_BATCH_STATES = {"COMPLETED", "FAILED", "CANCELLED"}
FINAL_ITEM_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED", "LAUNCH_FAILED", "SKIPPED",
                     "STUCK"}
DEMO_DEPLOYMENT = "demo-flow/demo"
DEMO_DEPLOYMENT_ID = "00000000-0000-4000-8000-000000000001"
# A line of a sanitizer report: "ERROR: AddressSanitizer: ...", "WARNING: ThreadSanitizer: ...",
# "ERROR: LeakSanitizer: ...", or UBSan's "file:line:col: runtime error: ...".
SANITIZER_REPORT = re.compile(
    r"(ERROR|WARNING): (Address|Leak|Thread|Memory|UndefinedBehavior)Sanitizer"
    r"|^\S+:\d+:\d+: runtime error: ")


# --------------------------------------------------------------------------------------------
# Small utilities

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Polls `predicate` until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


# floodgated's flags whose value is a secret (also in --flag=value form); URLs lose userinfo.
SECRET_FLAGS = ("--prefect-api-key", "--prefect-api-auth-string", "--api-tokens")


def redact_command(args: list[str]) -> str:
    """The command line as the log may show it: secret flag values and URL passwords hidden."""
    shown: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            shown.append("[redacted]")
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag in SECRET_FLAGS:
            if eq:
                shown.append(f"{flag}=[redacted]")
            else:
                shown.append(arg)
                hide_next = True
            continue
        shown.append(re.sub(r"(://)[^/@\s]*@", r"\1[redacted]@", arg))
    return " ".join(shown)


def tail(path: Path, lines: int = 60) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"(no log: {e})"
    text = data[-200_000:].decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def __repr__(self) -> str:  # shows up in assertion messages
        return f"<Response {self.status} {self.body[:400]!r}>"


def raw_request(base: str, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30) -> Response:
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        return Response(r.status, hdrs, data, time.monotonic() - t0)
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# floodgate's REST API

class FloodgateClient:
    """HTTP client for floodgated. Every answer is checked against the OpenAPI contract."""

    def __init__(self, base: str, checker: OpenApiChecker):
        self.base = base
        self.checker = checker

    def request(self, method: str, path: str, json_body: Any = None, *, data: bytes | None = None,
                headers: dict[str, str] | None = None, query: dict[str, Any] | None = None,
                timeout: float = 30) -> Response:
        hdrs = dict(headers or {})
        body = data
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        target = path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        r = raw_request(self.base, method, target, body, hdrs, timeout)
        req_ct = next((v for k, v in hdrs.items() if k.lower() == "content-type"), None)
        self.checker.check_response(method, urllib.parse.urlsplit(target).path, r.status,
                                    r.headers, r.body, body, req_ct)
        return r

    # Conveniences -------------------------------------------------------------------------
    def submit(self, body: dict, *, idempotency_key: str | None = None, expect: int = 201) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        r = self.request("POST", "/v1/batches", body, headers=headers, timeout=120)
        assert r.status == expect, r
        return r.json

    def batch(self, batch_id: str, **query) -> dict:
        # A 503 with Retry-After (with several replicas: the batch is being taken over) is
        # waited out, as the Python client does; for at most 60 s.
        deadline = time.monotonic() + 60
        while True:
            r = self.request("GET", f"/v1/batches/{batch_id}", query=query or None,
                             timeout=float(query.get("wait_s", 0)) + 30)
            retry_after = r.headers.get("retry-after") if r.status == 503 else None
            if retry_after is None or time.monotonic() > deadline:
                break
            time.sleep(min(float(retry_after), 1.0))
        assert r.status == 200, r
        return r.json

    def batches(self, **query) -> Response:
        return self.request("GET", "/v1/batches", query=query or None)

    def all_batches(self, **query) -> list[dict]:
        out, after = [], None
        while True:
            q = dict(query)
            if after is not None:
                q["after"] = after
            r = self.batches(**q)
            assert r.status == 200, r
            out += r.json["batches"]
            after = r.json["next"]
            if after is None:
                return out

    def runs_page(self, batch_id: str, **query) -> Response:
        return self.request("GET", f"/v1/batches/{batch_id}/runs", query=query or None)

    def all_runs(self, batch_id: str, state: str | None = None, limit: int = 1000) -> list[dict]:
        out, after = [], None
        while True:
            q: dict[str, Any] = {"limit": limit}
            if state:
                q["state"] = state
            if after is not None:
                q["after"] = after
            r = self.runs_page(batch_id, **q)
            assert r.status == 200, r
            out += r.json["runs"]
            after = r.json["next"]
            if after is None:
                return out

    def control(self, batch_id: str, action: str, body: Any = None) -> Response:
        return self.request("POST", f"/v1/batches/{batch_id}/{action}", body)

    def patch(self, batch_id: str, body: Any) -> Response:
        return self.request("PATCH", f"/v1/batches/{batch_id}", body)

    def wait_state(self, batch_id: str, states=FINAL_BATCH_STATES, timeout: float = 60,
                   predicate: Callable[[dict], bool] | None = None) -> dict:
        """Long-polls until the batch is in one of `states` (and `predicate` holds)."""
        states = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        b = self.batch(batch_id)
        while True:
            if b["state"] in states and (predicate is None or predicate(b)):
                return b
            if b["state"] in FINAL_BATCH_STATES and b["state"] not in states:
                raise AssertionError(f"batch {batch_id} ended {b['state']} (waiting for "
                                     f"{sorted(states)}): counts={b['counts']}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"batch {batch_id} did not reach {sorted(states)} within {timeout}s: "
                    f"state={b['state']} counts={b['counts']}")
            b = self.batch(batch_id, wait_s=round(min(5.0, max(0.1, left)), 2),
                           after_version=b["version"])

    def metrics(self) -> str:
        r = self.request("GET", "/metrics")
        assert r.status == 200, r
        return r.body.decode()


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {'name{labels}': value} (labels as written)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


# --------------------------------------------------------------------------------------------
# Processes

class FakePrefect:
    def __init__(self, binary: Path, log_path: Path, config: dict | None = None):
        self.log_path = log_path
        args = [str(binary), "--listen", "127.0.0.1:0"]
        if config:
            args += ["--config", json.dumps(config)]
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log)
        line = self._read_line(10)
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"fake-prefect did not start: {line!r}; {tail(log_path)}")
        self.addr = line.split()[-1]
        self.base = f"http://{self.addr}"
        self.api_url = f"{self.base}/api"

    def _read_line(self, timeout: float) -> str:
        result: list[bytes] = []
        t = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        return result[0].decode().strip() if result else ""

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 120) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        r = raw_request(self.base, method, path, data,
                        {"Content-Type": "application/json"} if data else None, timeout)
        if r.status >= 300:
            raise AssertionError(f"fake {method} {path} -> {r.status}: {r.body[:500]!r}")
        return r.json

    def config(self, **cfg) -> dict:
        return self._call("POST", "/_fake/config", cfg)

    def add_deployment(self, **d) -> dict:
        return self._call("POST", "/_fake/deployments", d)

    def stats(self) -> dict:
        return self._call("GET", "/_fake/stats")

    def runs(self) -> list[dict]:
        return self._call("GET", "/_fake/runs")["runs"]

    def task_runs(self) -> list[dict]:
        return self._call("GET", "/_fake/task_runs")["task_runs"]

    def timeline(self) -> list[dict]:
        return self._call("GET", "/_fake/timeline")["buckets"]

    def create_run(self, **run) -> dict:
        """A flow run made outside the API (e.g. a parent flow run): name, deployment_id, tags,
        state (a state type; without one it stays SCHEDULED). Not counted in the stats."""
        return self._call("POST", "/_fake/runs", run)

    def set_run_state(self, run_id: str, type: str, name: str | None = None,
                      message: str | None = None) -> dict:
        """Puts a run in a state at once, without Prefect's rules and without counting."""
        body: dict[str, Any] = {"type": type}
        if name is not None:
            body["name"] = name
        if message is not None:
            body["message"] = message
        return self._call("POST", f"/_fake/runs/{run_id}/state", body)

    def delete_run(self, run_id: str) -> None:
        """Deletes a run outside the API, as from Prefect's UI (not counted in the stats)."""
        r = raw_request(self.base, "DELETE", f"/_fake/runs/{run_id}", None, None, 30)
        assert r.status == 204, (r.status, r.body[:200])

    def set_states(self) -> list[dict]:
        """Every set_state request the API received: flow_run_id, type, transition_id, force,
        from_type (the run's state type then), status (ACCEPT, REJECT, ABORT, NOT_FOUND)."""
        return self._call("GET", "/_fake/set_states")["set_states"]

    def advance_clock(self, ms: int) -> None:
        self._call("POST", "/_fake/clock", {"advance_ms": ms})

    def unfinished_peak(self, batch_id: str) -> int:
        """The most runs of the batch that were unfinished at one instant on the fake: exact
        (a sweep over each run's timeline), so a breach of max_running however short shows."""
        peaks = self._call("GET", "/_fake/peaks")["unfinished_peak_by_tag"]
        return int(peaks.get(f"floodgate-batch:{batch_id}", 0))

    def runs_of(self, batch_id: str) -> list[dict]:
        tag = f"floodgate-batch:{batch_id}"
        return [r for r in self.runs() if tag in r["tags"]]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()


def assert_exactly_once(runs: list[dict], batch_id: str, total: int) -> None:
    """Every index of the batch has exactly one run on the fake, with the deterministic key."""
    keys = collections.Counter(r["idempotency_key"] for r in runs)
    dupes = {k: n for k, n in keys.items() if n > 1}
    assert not dupes, f"{len(dupes)} idempotency keys created more than once, e.g. {list(dupes.items())[:5]}"
    want = {f"floodgate:{batch_id}:{i}" for i in range(total)}
    missing = want - set(keys)
    extra = set(keys) - want
    assert not missing, f"{len(missing)} runs missing on the fake, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} unexpected runs on the fake, e.g. {sorted(extra)[:5]}"
    assert len(runs) == total


class Floodgated:
    def __init__(self, binary: Path, fake: FakePrefect | None, workdir: Path, name: str,
                 args: list[str] | None = None, env: dict[str, str] | None = None,
                 checker: OpenApiChecker | None = None, prefect_api_url: str | None = None):
        self.binary = binary
        self.fake = fake
        self.workdir = workdir
        self.name = name
        self.db_path = workdir / f"{name}.db"
        self.log_path = workdir / f"{name}.log"
        self.extra_args = list(args or [])
        self.env = dict(env or {})
        self.checker = checker
        self.prefect_api_url = prefect_api_url or (fake.api_url if fake else None)
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.client: FloodgateClient | None = None
        self.starts = 0

    def command(self) -> list[str]:
        args = [str(self.binary), "--listen", f"127.0.0.1:{self.port}",
                "--db", f"sqlite:///{self.db_path}"]
        if self.prefect_api_url:
            args += ["--prefect-api-url", self.prefect_api_url]
        return args + self.extra_args

    def start(self, timeout: float = 15) -> "Floodgated":
        """Starts (or restarts) on the same db; a fresh port each time is fine for the tests."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        for _ in range(3):
            self.port = self.port if self.starts and self.port else free_port()
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("FLOODGATE_", "PREFECT_"))}
            env.update(self.env)
            with open(self.log_path, "ab") as log:
                log.write(f"==== start #{self.starts + 1}: {redact_command(self.command())}\n"
                          .encode())
                log.flush()
                self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, env=env)
            self.starts += 1
            self.client = FloodgateClient(f"http://127.0.0.1:{self.port}", self.checker)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    r = self.client.request("GET", "/healthz", timeout=2)
                    if r.status == 200:
                        return self
                except (ConnectionError, OSError, http.client.HTTPException):
                    pass
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.kill()
                raise RuntimeError(f"floodgated not healthy within {timeout}s:\n{tail(self.log_path)}")
            if "cannot listen" not in tail(self.log_path, 5):
                raise RuntimeError(
                    f"floodgated exited with {self.proc.returncode}:\n{tail(self.log_path)}")
            self.port = None  # port taken meanwhile: pick another
        raise RuntimeError(f"floodgated could not start:\n{tail(self.log_path)}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no drain, no flush."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM; returns the exit code (raises if it does not exit within `timeout`)."""
        assert self.running
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def restart(self, graceful: bool = False) -> "Floodgated":
        """Kills (SIGKILL, or SIGTERM when graceful) and starts again on the same db."""
        if self.running:
            if graceful:
                code = self.terminate()
                assert code == 0, f"floodgated exited {code} on SIGTERM:\n{tail(self.log_path)}"
            else:
                self.kill()
        return self.start()

    def sanitizer_reports(self) -> list[str]:
        """Sanitizer reports (ASan, LSan, UBSan, TSan) in this process's log: a build with
        sanitizers (scripts/sanitizers.sh) writes them to stderr, which goes to the log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if SANITIZER_REPORT.search(line)]

    def stop(self) -> None:
        if self.running:
            self.proc.kill()
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        # Fails the test (in its teardown) when floodgated reported a sanitizer error at any
        # time, even if the test's own assertions passed.
        reports = self.sanitizer_reports()
        if reports:
            raise AssertionError(f"{self.name}: sanitizer report(s) in {self.log_path}:\n"
                                 + "\n".join(reports[:10]) + "\n" + tail(self.log_path, 60))
