"""Small standard-library clients for the e2e tests: floodgate's REST API, Prefect's REST API,
and a handle on one floodgated process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable

FINAL_BATCH_STATES = {"COMPLETED", "FAILED", "CANCELLED"}
FINAL_PREFECT_STATES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


class HttpError(Exception):
    def __init__(self, status: int, body: str, url: str):
        super().__init__(f"HTTP {status} from {url}: {body[:500]}")
        self.status = status
        self.body = body
        self.url = url

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


# What a SQLite-backed Prefect answers when a write lost the race for the database lock
# ("database is locked", SQLITE_BUSY; prefect/server/api/server.py,
# custom_internal_exception_handler): nothing was written, and Prefect's own client retries it.
PREFECT_RETRYABLE_503 = {"exception_message": "Service Unavailable"}


def is_prefect_retryable_503(status: int, text: str) -> bool:
    """Prefect's "try again" answer. Compared as JSON, not as text: an earlier version of this
    check stripped the blanks from the body and then looked for "Service Unavailable" (with its
    blank), so it never matched and no 503 was ever retried."""
    if status != 503:
        return False
    try:
        return json.loads(text) == PREFECT_RETRYABLE_503
    except ValueError:
        return False


def http(method: str, url: str, body: Any = None, timeout: float = 60.0,
         headers: dict | None = None, retry_503_s: float = 60.0) -> tuple[int, Any]:
    """One JSON request. Prefect's retryable 503 is retried, as Prefect's client does, for up
    to `retry_503_s` seconds (waiting 0.5, 1, 2, 4, then 5 s between tries): the tests' own
    calls to the server must not fail on a lock that Prefect's services, the worker or the
    children happened to hold. A busy SQLite server answers a write whose transaction read
    first and lost the lock at once (SQLITE_BUSY without waiting), so these come in bursts
    while other writers are busy, not one in a while."""
    data = None if body is None else json.dumps(body).encode()
    h = {"Content-Type": "application/json", "Accept": "application/json"}
    h.update(headers or {})
    deadline = time.monotonic() + retry_503_s
    attempt = 0
    while True:
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            pause = min(5.0, 0.5 * 2 ** attempt)
            if is_prefect_retryable_503(e.code, text) and time.monotonic() + pause < deadline:
                attempt += 1
                time.sleep(pause)
                continue
            raise HttpError(e.code, text, url) from None


def wait_until(what: str, pred: Callable[[], Any], timeout: float, interval: float = 0.5):
    """Poll pred() until it returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - shown if we time out
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------
# Prefect


class Prefect:
    def __init__(self, api_url: str):
        self.api = api_url.rstrip("/")

    def get(self, path: str, timeout: float = 30):
        return http("GET", self.api + path, timeout=timeout)[1]

    def post(self, path: str, body: Any, timeout: float = 30, retry_503_s: float = 60.0):
        return http("POST", self.api + path, body, timeout=timeout, retry_503_s=retry_503_s)[1]

    def healthy(self) -> bool:
        try:
            return http("GET", self.api + "/health", timeout=3)[0] == 200
        except Exception:  # noqa: BLE001
            return False

    def _paged(self, path: str, key: str, flt: dict) -> list[dict]:
        out, offset = [], 0
        while True:
            page = self.post(path, {key: flt, "limit": 200, "offset": offset, "sort": "ID_DESC"}
                             if key == "flow_runs" else
                             {key: flt, "limit": 200, "offset": offset})
            out.extend(page)
            if len(page) < 200:
                return out
            offset += 200

    def flow_runs(self, flt: dict) -> list[dict]:
        return self._paged("/flow_runs/filter", "flow_runs", flt)

    def flow_runs_by_tag(self, tag: str) -> list[dict]:
        return self.flow_runs({"tags": {"all_": [tag]}})

    def flow_runs_by_id(self, ids: Iterable[str]) -> list[dict]:
        ids = list(ids)
        out = []
        for i in range(0, len(ids), 200):
            out.extend(self.flow_runs({"id": {"any_": ids[i:i + 200]}}))
        return out

    def task_runs_of(self, flow_run_id: str) -> list[dict]:
        return self._paged("/task_runs/filter", "task_runs",
                           {"flow_run_id": {"any_": [flow_run_id]}})

    def deployment(self, name: str) -> dict:
        flow, dep = name.split("/", 1)
        return self.get(f"/deployments/name/{urllib.parse.quote(flow, safe='')}/"
                        f"{urllib.parse.quote(dep, safe='')}")

    def flow_by_name(self, name: str) -> dict:
        return self.get(f"/flows/name/{urllib.parse.quote(name, safe='')}")

    def set_state(self, flow_run_id: str, state_type: str, force: bool = True) -> dict:
        return self.post(f"/flow_runs/{flow_run_id}/set_state",
                         {"state": {"type": state_type}, "force": force})


class Completer:
    """Plays the worker for the children of `tag` through Prefect's REST API.

    Every `interval` s: a SCHEDULED child is proposed RUNNING, a child RUNNING for `hold_s`
    is proposed COMPLETED (force false: the server's orchestration rules apply, as for a
    worker and engine). Connection errors and 5xx (a Prefect outage, "database is locked")
    are waited out. Counts what it did in `.started` and `.completed` (flow run ids).
    `only(flow_run)`, when given, picks the children it plays the worker for (the others are
    left as they are)."""

    def __init__(self, prefect: Prefect, tag: str, hold_s: float = 1.0, interval: float = 0.5,
                 only: Callable[[dict], bool] | None = None):
        self.prefect, self.tag, self.hold_s, self.interval = prefect, tag, hold_s, interval
        self.only = only
        self.started: dict[str, float] = {}
        self.completed: set[str] = set()
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="completer", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def _propose(self, run_id: str, state_type: str) -> bool:
        ans = self.prefect.post(f"/flow_runs/{run_id}/set_state",
                                {"state": {"type": state_type}, "force": False})
        return ans.get("status") == "ACCEPT"

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                runs = self.prefect.flow_runs({"tags": {"all_": [self.tag]},
                                               "state": {"type": {"not_any_": sorted(FINAL_PREFECT_STATES)}}})
                now = time.monotonic()
                for fr in runs:
                    if self.only is not None and not self.only(fr):
                        continue
                    rid = fr["id"]
                    if fr["state_type"] == "SCHEDULED" and self._propose(rid, "RUNNING"):
                        self.started[rid] = now
                    elif fr["state_type"] == "RUNNING":
                        self.started.setdefault(rid, now)
                        if now - self.started[rid] >= self.hold_s and self._propose(rid, "COMPLETED"):
                            self.completed.add(rid)
            except Exception:  # noqa: BLE001 - Prefect down or busy: try again next round
                self.errors += 1


# ---------------------------------------------------------------------------------------
# floodgate


class Floodgate:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def submit(self, body: dict, headers: dict | None = None) -> dict:
        status, batch = http("POST", self.url + "/v1/batches", body, headers=headers)
        assert status in (200, 201), (status, batch)
        return batch

    def batch(self, batch_id: str, wait_s: float = 0, after_version: int | None = None) -> dict:
        q = {}
        if wait_s:
            q["wait_s"] = str(wait_s)
        if after_version is not None:
            q["after_version"] = str(after_version)
        qs = ("?" + urllib.parse.urlencode(q)) if q else ""
        return http("GET", f"{self.url}/v1/batches/{batch_id}{qs}",
                    timeout=wait_s + 30)[1]

    def runs(self, batch_id: str, state: str | None = None) -> list[dict]:
        out, after = [], None
        while True:
            q = {"limit": "1000"}
            if state:
                q["state"] = state
            if after is not None:
                q["after"] = str(after)
            page = http("GET", f"{self.url}/v1/batches/{batch_id}/runs?"
                        + urllib.parse.urlencode(q))[1]
            out.extend(page["runs"])
            after = page.get("next")
            if after in (None, ""):
                return out

    def cancel(self, batch_id: str, body: dict | None = None) -> dict:
        return http("POST", f"{self.url}/v1/batches/{batch_id}/cancel", body or {})[1]

    def wait_final(self, batch_id: str, timeout: float, on_change: Callable | None = None) -> dict:
        """Long-poll the batch until it is final (tolerates floodgated being down briefly)."""
        deadline = time.monotonic() + timeout
        version = None
        b = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"batch {batch_id} not final after {timeout:.0f}s: {b}")
            try:
                b = self.batch(batch_id, wait_s=min(20, max(1, left)),
                               after_version=version)
            except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout):
                time.sleep(0.5)
                continue
            version = b["version"]
            if on_change:
                on_change(b)
            if b["state"] in FINAL_BATCH_STATES:
                return b


def find_floodgated() -> Path | None:
    env = os.environ.get("FLOODGATED")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[2]
    for preset in ("ci", "release", "debug"):
        p = root / "build" / preset / "service" / "floodgated"
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


class FloodgateProcess:
    """One floodgated on a fixed port and db; can be SIGKILLed and started again."""

    def __init__(self, binary: Path, prefect_api_url: str, db_path: Path, log_path: Path,
                 extra_args: list[str] | None = None):
        self.binary = binary
        self.prefect_api_url = prefect_api_url
        self.db_path = db_path
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None
        self.client = Floodgate(self.url)
        self.starts = 0

    def start(self, timeout: float = 30) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FLOODGATE_", "PREFECT_API_KEY", "PREFECT_API_AUTH"))}
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n==== start #{self.starts} ====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [str(self.binary), "--listen", f"127.0.0.1:{self.port}",
             "--prefect-api-url", self.prefect_api_url,
             "--db", f"sqlite://{self.db_path}", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"floodgated exited with {self.proc.returncode}; "
                                     f"see {self.log_path}:\n{self.log_tail()}")
            try:
                return http("GET", self.url + "/healthz", timeout=2)[0] == 200
            except (urllib.error.URLError, ConnectionError, OSError, HttpError):
                return False
        wait_until("floodgated /healthz", up, timeout, 0.1)

    def kill(self) -> None:
        """SIGKILL: no drain, no flush — as a crash or an OOM kill."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
