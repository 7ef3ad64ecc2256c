#!/usr/bin/env python3
"""The seed's scenario on a real Prefect server (issue 5, item 4): a parent flow fans out N
children with ``asyncio.gather(run_deployment(...))``, then the same parent with floodgate's
Python helper (``floodgate.arun_deployments``).

    python3 tests/bench/seed_scenario.py                       # 100 children, both ways
    python3 tests/bench/seed_scenario.py --children 20 --modes floodgate   # a quick look
    python3 tests/bench/seed_scenario.py --keep-prefect        # leave the server up after

What it sets up (standard library only here; Prefect runs in its own venv):
- a Prefect server, a process work pool ``floodgate-bench`` with a process worker and the
  deployment ``demo-flow/demo`` (tests/e2e/flows: sleeps ``sleep_s``, returns ``x * 2``), by
  ``scripts/prefect-env.sh`` on port 4230 (run dir ``.run/bench-prefect``; each mode gets a
  freshly started server with an empty database and an idle worker). The server runs with Prefect's defaults (all its services, events persisted),
  only the UI and analytics off; ``--lean`` turns off the services the e2e tests do without.
  Each child is a real flow run: a process started by the worker running Prefect's engine.
  ``--api-url URL`` reuses a running server instead (it must serve demo-flow/demo, with a
  worker); nothing is started or stopped then.
- a counting reverse proxy (asyncio, below) in front of the server with two listeners: one
  for the parent flow's Prefect client (its PREFECT_API_URL) and one for floodgated
  (``--prefect-api-url``). It counts every request by listener, method and path template
  (ids replaced by ``{id}``), and passes websockets through (a websocket counts once, when
  opened). The worker and the children talk to the server directly: their traffic is the
  same whoever launched them, and it is not counted.
- floodgated (build/ci/service/floodgated) with its defaults and a fresh SQLite file, for the
  floodgate run only.

Each mode then runs ``tests/bench/seed/seed_parent.py`` as a local process (its own flow run
is created through the proxy too) and the bench reports, from Prefect's API (not through the
proxy): children COMPLETED, children that crashed or failed, duplicates (flow runs beyond one
per parameter set ``x``), and makespan (parent process start to end); from the proxy: API
requests in total and per child, split into the parent's ``run_deployment`` pattern (resolve
``GET /deployments/name/...``, placeholder ``POST /task_runs/``, ``POST .../create_flow_run``,
polls ``GET /flow_runs/{id}``), the parent's own bookkeeping (its flow run, states, logs,
events websocket), and floodgated's requests. Results go to stdout as a table and to
``--out`` as JSON.

Noise: the machine the numbers in docs/benchmarks.md come from has 2 cores shared with other
work; a child costs ~3.5 CPU-s of Prefect engine start-up, so makespan is mostly the worker
chewing through 100 Python processes and moves by tens of seconds between runs. Request
counts are much steadier (the polls scale with makespan, though).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402  (standard library only: provenance, load)
PREFECT_ENV = ROOT / "scripts" / "prefect-env.sh"
PARENT = ROOT / "tests" / "bench" / "seed" / "seed_parent.py"
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
RUN_DEPLOYMENT_PATTERN = {
    "GET /deployments/name/{flow}/{deployment}",
    "POST /task_runs/",
    "POST /deployments/{id}/create_flow_run",
    "GET /flow_runs/{id}",
}


# ---------------------------------------------------------------------------------------------
# the counting proxy


def template(method: str, target: str) -> str:
    path = urllib.parse.urlsplit(target).path
    if path.startswith("/api"):
        path = path[4:] or "/"
    m = re.match(r"^/deployments/name/[^/]+/[^/]+$", path)
    if m:
        path = "/deployments/name/{flow}/{deployment}"
    path = UUID_RE.sub("{id}", path)
    return f"{method} {path}"


class CountingProxy:
    """An HTTP/1.1 reverse proxy (keep-alive, Content-Length and chunked bodies, websocket
    upgrades) that counts requests per (listener label, method + path template)."""

    def __init__(self, upstream_host: str, upstream_port: int):
        self.up_host, self.up_port = upstream_host, upstream_port
        self.counts: collections.Counter = collections.Counter()
        self.statuses: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.ports: dict[str, int] = {}
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._servers = []
        self._tasks: set = set()
        self.trace: list = []     # (start, seconds, label, request, status) of every request

    def start(self, labels: list[str]) -> dict[str, int]:
        self._thread.start()
        for label in labels:
            fut = asyncio.run_coroutine_threadsafe(self._listen(label), self.loop)
            self.ports[label] = fut.result(10)
        return self.ports

    async def _listen(self, label: str) -> int:
        server = await asyncio.start_server(lambda r, w: self._client(label, r, w),
                                            "127.0.0.1", 0, limit=1 << 20)
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    def stop(self):
        async def close():
            for s in self._servers:
                s.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.sleep(0.1)
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def snapshot(self) -> collections.Counter:
        with self.lock:
            return collections.Counter(self.counts)

    def reset(self):
        with self.lock:
            self.counts.clear()
            self.statuses.clear()
            self.trace.clear()

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
        try:
            return await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    @staticmethod
    def _headers(head: bytes) -> tuple[str, dict[str, str]]:
        lines = head.decode("latin-1").split("\r\n")
        h = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                h[k.strip().lower()] = v.strip()
        return lines[0], h

    @staticmethod
    async def _pipe_body(reader, writer, headers: dict[str, str], until_close: bool):
        te = headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            while True:
                size_line = await reader.readuntil(b"\r\n")
                writer.write(size_line)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers, then the empty line
                        line = await reader.readuntil(b"\r\n")
                        writer.write(line)
                        if line == b"\r\n":
                            break
                    break
                writer.write(await reader.readexactly(size + 2))
                await writer.drain()
        elif "content-length" in headers:
            left = int(headers["content-length"])
            while left > 0:
                chunk = await reader.read(min(left, 1 << 16))
                if not chunk:
                    raise ConnectionError("short body")
                writer.write(chunk)
                left -= len(chunk)
            await writer.drain()
        elif until_close:
            while True:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    break
                writer.write(chunk)
            await writer.drain()

    @staticmethod
    async def _splice(reader, writer):
        try:
            while True:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def _client(self, label: str, creader, cwriter):
        # One upstream connection per request: reusing one would race the server's keep-alive
        # timeout (uvicorn closes idle connections after 5 s, just when a 5 s poll comes), and
        # the client, which sees its own connection to the proxy alive, would get "Server
        # disconnected without sending a response" - an error of the proxy, not of Prefect.
        self._tasks.add(asyncio.current_task())
        try:
            while True:
                head = await self._read_head(creader)
                if head is None:
                    return
                request_line, headers = self._headers(head)
                method, target, _ = request_line.split(" ", 2)
                key = template(method, target)
                upgrade = "upgrade" in headers.get("connection", "").lower()
                with self.lock:
                    self.counts[(label, key + (" (websocket)" if upgrade else ""))] += 1
                t_start = time.time()
                ureader, uwriter = await asyncio.open_connection(self.up_host, self.up_port,
                                                                 limit=1 << 20)
                try:
                    uwriter.write(head)
                    await self._pipe_body(creader, uwriter, headers, until_close=False)
                    rhead = await self._read_head(ureader)
                    if rhead is None:
                        return
                    status_line, rheaders = self._headers(rhead)
                    status = int(status_line.split(" ", 2)[1])
                    with self.lock:
                        self.statuses[(label, status)] += 1
                        self.trace.append((round(t_start, 3), round(time.time() - t_start, 3),
                                           label, key, status))
                    cwriter.write(rhead)
                    if status == 101:
                        await cwriter.drain()
                        await asyncio.gather(self._splice(creader, uwriter),
                                             self._splice(ureader, cwriter))
                        return
                    no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
                    chunked = "chunked" in rheaders.get("transfer-encoding", "").lower()
                    if not no_body:
                        await self._pipe_body(ureader, cwriter, rheaders,
                                              until_close="content-length" not in rheaders
                                              and not chunked)
                    await cwriter.drain()
                    if ("close" in rheaders.get("connection", "").lower()
                            or "close" in headers.get("connection", "").lower()
                            or (not no_body and "content-length" not in rheaders and not chunked)):
                        return
                finally:
                    uwriter.close()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError, asyncio.CancelledError):
            return
        finally:
            self._tasks.discard(asyncio.current_task())
            try:
                cwriter.close()
            except Exception:  # noqa: BLE001
                pass


# ---------------------------------------------------------------------------------------------
# Prefect, floodgated


def http_json(method: str, url: str, body=None, timeout: float = 30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def flow_runs_by_tag(api: str, tag: str) -> list[dict]:
    out, offset = [], 0
    while True:
        page = http_json("POST", f"{api}/flow_runs/filter",
                         {"flow_runs": {"tags": {"all_": [tag]}}, "limit": 200,
                          "offset": offset, "sort": "ID_DESC"})
        out.extend(page)
        if len(page) < 200:
            return out
        offset += 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectStack:
    def __init__(self, args):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env.update(FG_PREFECT_PORT=str(args.port),
                        FG_PREFECT_RUN_DIR=str(ROOT / ".run" / "bench-prefect"),
                        FG_PREFECT_POOL="floodgate-bench",
                        FG_PREFECT_WORKER_LIMIT=str(args.worker_limit),
                        FG_PREFECT_LEAN="true" if args.lean else "false")
        self.api = f"http://127.0.0.1:{args.port}/api"

    def script(self, *a: str) -> None:
        r = subprocess.run(["bash", str(PREFECT_ENV), *a], env=self.env, text=True,
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=900)
        sys.stderr.write(r.stderr)
        if r.returncode:
            raise SystemExit(f"prefect-env.sh {' '.join(a)} failed:\n{r.stdout}{r.stderr}")

    def venv_python(self) -> str:
        out = subprocess.run(["bash", str(PREFECT_ENV), "env"], env=self.env, text=True,
                             capture_output=True, check=True).stdout
        m = re.search(r"export FG_PREFECT_VENV=(\S+)", out)
        return str(Path(m.group(1).strip("'\"")) / "bin" / "python")


def find_floodgated(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    for preset in ("ci", "release", "debug"):
        p = ROOT / "build" / preset / "service" / "floodgated"
        if p.is_file():
            return p
    raise SystemExit("floodgated is not built (build/ci/service/floodgated); set --floodgated")


class Floodgated:
    def __init__(self, binary: Path, prefect_url: str, workdir: Path, extra: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        db = workdir / f"floodgate-{uuid.uuid4().hex[:8]}.db"
        self.log = open(workdir / "floodgated.log", "ab")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FLOODGATE_", "PREFECT_"))}
        self.proc = subprocess.Popen(
            [str(binary), "--listen", f"127.0.0.1:{self.port}", "--prefect-api-url", prefect_url,
             "--db", f"sqlite://{db}", *extra], stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2).read()
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"floodgated did not start; see {self.log.name}")
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


# ---------------------------------------------------------------------------------------------
# one run


class LoadSampler:
    """The 1-minute load average every 10 s while a mode runs: min, median, max."""

    def __init__(self, every_s: float = 10):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._every = every_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            with open("/proc/loadavg") as f:
                self.samples.append(float(f.read().split()[0]))
            if self._stop.wait(self._every):
                return

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(5)
        v = sorted(self.samples)
        return {"min": v[0], "median": v[len(v) // 2], "max": v[-1], "samples": len(v)}


def run_mode(mode: str, args, api: str, proxy: CountingProxy, py: str, fg_binary: Path,
             workdir: Path) -> dict:
    tag = f"seed-bench:{mode}:{uuid.uuid4().hex[:8]}"
    fg = None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FLOODGATE_"))}
    env.update(PREFECT_API_URL=f"http://127.0.0.1:{proxy.ports['parent']}/api",
               PREFECT_HOME=str(workdir / "parent-home"),
               PREFECT_PROFILES_PATH=str(workdir / "parent-home" / "profiles.toml"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
               PYTHONPATH=str(ROOT / "client" / "python"))
    if args.parent_client_retries is not None:
        env["PREFECT_CLIENT_MAX_RETRIES"] = str(args.parent_client_retries)
    if mode == "floodgate":
        fg = Floodgated(fg_binary, f"http://127.0.0.1:{proxy.ports['floodgated']}/api", workdir,
                        args.floodgated_arg)
        env["FLOODGATE_URL"] = fg.url
    time.sleep(2)           # let floodgated's start-up probes land before the counting starts
    proxy.reset()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    sampler = LoadSampler()
    t0 = time.time()
    timed_out = False
    try:
        proc = subprocess.Popen([py, str(PARENT), mode, "--deployment", args.deployment,
                                 "--n", str(args.children), "--tag", tag,
                                 "--sleep-s", str(args.sleep_s)]
                                + (["--limits", args.limits] if args.limits else []),
                                env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.terminate()
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
        r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        makespan = time.time() - t0
        load_seen = sampler.stop()
        counts = proxy.snapshot()
        statuses = dict(proxy.statuses)
        with proxy.lock:
            trace = list(proxy.trace)
        with open(workdir / f"requests-{mode}.jsonl", "w") as f:
            for row in trace:
                f.write(json.dumps(row) + "\n")
    finally:
        if fg:
            fg.stop()
    result = {}
    for line in r.stdout.splitlines():
        if line.startswith("SEED_RESULT "):
            result = json.loads(line[len("SEED_RESULT "):])
    if timed_out:
        result["error"] = f"timed out after {args.timeout:g} s (parent stopped)"
    if r.returncode or result.get("error"):
        sys.stderr.write(r.stdout[-3000:] + r.stderr[-3000:])
    children = flow_runs_by_tag(api, tag)
    per_x = collections.Counter(c["parameters"].get("x") for c in children)
    states = collections.Counter(c["state_type"] for c in children)
    parent_reqs = {k[1]: v for k, v in counts.items() if k[0] == "parent"}
    fg_reqs = {k[1]: v for k, v in counts.items() if k[0] == "floodgated"}
    pattern = sum(v for k, v in parent_reqs.items() if k in RUN_DEPLOYMENT_PATTERN)
    n = args.children
    total = sum(parent_reqs.values()) + sum(fg_reqs.values())
    # When the last child was created and when the last one ended, from the parent's start:
    # the first is the launcher's work, the rest of the makespan is the worker's.
    def after_start(field: str) -> float | None:
        stamps = [c.get(field) for c in children]
        if not stamps or any(not x for x in stamps):
            return None
        last = max(datetime.datetime.fromisoformat(x.replace("Z", "+00:00")) for x in stamps)
        return round(last.timestamp() - t0, 1)

    return {
        "mode": mode, "tag": tag, "load_at_start": load, "makespan_s": round(makespan, 1),
        "load_1min_during": load_seen,
        "last_created_s": after_start("created"), "last_ended_s": after_start("end_time"),
        "parent_error": result.get("error"), "parent_result": result.get("child_states"),
        "parent_ok": not r.returncode and not result.get("error"),
        "children_runs": len(children), "children_distinct": len(per_x),
        "children_completed": states.get("COMPLETED", 0),
        "children_states": dict(states),
        "duplicates": sum(c - 1 for c in per_x.values() if c > 1),
        "missing": n - len([x for x in per_x if x is not None]),
        "requests_total": total, "requests_per_child": round(total / n, 2),
        "requests_parent_run_deployment_pattern": pattern,
        "requests_parent_other": sum(parent_reqs.values()) - pattern,
        "requests_floodgated": sum(fg_reqs.values()),
        "parent_requests": dict(sorted(parent_reqs.items(), key=lambda kv: -kv[1])),
        "floodgated_requests": dict(sorted(fg_reqs.items(), key=lambda kv: -kv[1])),
        "statuses": {f"{k[0]} {k[1]}": v for k, v in sorted(statuses.items())},
    }


def table(results: list[dict], n: int) -> str:
    rows = [
        ("parent flow", None),
        ("children COMPLETED", "children_completed"),
        ("children not COMPLETED (states)", None),
        ("flow runs created / duplicates", None),
        ("Prefect API requests, total", "requests_total"),
        ("  per child", "requests_per_child"),
        ("  parent: run_deployment pattern", "requests_parent_run_deployment_pattern"),
        ("  parent: its own flow run, states, logs, events", "requests_parent_other"),
        ("  floodgated", "requests_floodgated"),
        ("answered 503 (database is locked)", None),
        ("last child created, s after the parent started", "last_created_s"),
        ("last child ended, s after the parent started", "last_ended_s"),
        ("makespan (parent start to end), s", "makespan_s"),
        ("load average at start", "load_at_start"),
        ("1-min load while it ran: min / median / max", None),
    ]
    head = "| | " + " | ".join(r["mode"] for r in results) + " |"
    out = [head, "|---" * (len(results) + 1) + "|"]
    for label, key in rows:
        cells = []
        for r in results:
            if key:
                cells.append(str(r[key]))
            elif label == "parent flow":
                cells.append("ok" if r["parent_ok"] else f"**{(r['parent_error'] or 'failed')[:90]}**")
            elif label.startswith("answered 503"):
                cells.append(str(sum(v for k, v in r["statuses"].items() if k.endswith(" 503"))))
            elif label.startswith("1-min load"):
                ld = r.get("load_1min_during")
                cells.append(f"{ld['min']} / {ld['median']} / {ld['max']}" if ld else "-")
            elif label.startswith("children not"):
                bad = {k: v for k, v in r["children_states"].items() if k != "COMPLETED"}
                cells.append(", ".join(f"{v} {k}" for k, v in bad.items()) or "0")
            else:
                cells.append(f"{r['children_runs']} / {r['duplicates']}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--children", type=int, default=100)
    ap.add_argument("--modes", default="gather,floodgate")
    ap.add_argument("--sleep-s", type=float, default=1.0, help="how long each child sleeps")
    ap.add_argument("--deployment", default="demo-flow/demo")
    ap.add_argument("--port", type=int, default=4230)
    ap.add_argument("--worker-limit", type=int, default=8)
    ap.add_argument("--api-url", help="reuse this running Prefect API (with a worker)")
    ap.add_argument("--lean", action="store_true",
                    help="run the server lean (FG_PREFECT_LEAN: no event persister, triggers, "
                         "... as the e2e tests do) instead of with Prefect's default services")
    ap.add_argument("--parent-client-retries", type=int,
                    help="PREFECT_CLIENT_MAX_RETRIES for the parent (Prefect's default: 5)")
    ap.add_argument("--limits", default="",
                    help="the floodgate batch's limits as JSON, e.g. '{\"max_backlog\": 0}' (default: none)")
    ap.add_argument("--keep-prefect", action="store_true")
    ap.add_argument("--floodgated")
    ap.add_argument("--floodgated-arg", action="append", default=[],
                    help="an extra floodgated flag, e.g. --floodgated-arg=--log-level=debug")
    ap.add_argument("--timeout", type=float, default=900,
                    help="stop a parent still running after this many seconds")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    fg_binary = find_floodgated(args.floodgated)
    workdir = ROOT / ".run" / "bench-seed"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)

    stack = PrefectStack(args)
    started = False
    api = args.api_url.rstrip("/") if args.api_url else stack.api

    def fresh_server():
        # Every mode starts on a server with an empty database and an idle worker: the orphans
        # of a failed gather run must not compete with the next mode for the cores or SQLite.
        nonlocal started
        stack.script("down")        # a server left over from an earlier run or mode
        stack.script("reset-db")
        stack.script("up")
        started = True

    if not args.api_url:
        fresh_server()
    py = stack.venv_python()
    up = urllib.parse.urlsplit(api)
    proxy = CountingProxy(up.hostname, up.port)
    proxy.start(["parent", "floodgated"])
    results = []
    provenance = bl.provenance()
    try:
        for i, mode in enumerate(modes):
            if i and not args.api_url:
                fresh_server()
            print(f"[seed] {mode}: {args.children} children of {args.deployment} ...",
                  file=sys.stderr, flush=True)
            res = run_mode(mode, args, api, proxy, py, fg_binary, workdir)
            results.append(res)
            print(f"[seed] {mode}: {res['children_completed']}/{args.children} COMPLETED, "
                  f"{res['duplicates']} duplicates, {res['requests_total']} requests, "
                  f"{res['makespan_s']} s", file=sys.stderr, flush=True)
            if args.api_url:
                time.sleep(5)   # let the worker settle between modes
    finally:
        proxy.stop()
        if started and not args.keep_prefect:
            stack.script("down")
    print(table(results, args.children))
    if args.out:
        provenance["load_end"] = bl.machine()["load"]
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "argv": sys.argv, "provenance": provenance,
                                        "nproc": os.cpu_count(), "results": results},
                                       indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
