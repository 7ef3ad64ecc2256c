"""Shared pieces of the Python benchmarks (standard library only).

A minimal asyncio HTTP/1.1 client (keep-alive, Content-Length bodies, as the fake answers),
blocking helpers for the fake's and floodgated's control APIs, and process management for
the fake Prefect (tests/fake_prefect) and floodgated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("BUILD", ROOT / "build" / "ci"))
FLOODGATED = Path(os.environ.get("FLOODGATED", BUILD / "service" / "floodgated"))
# The fake is built from this checkout's source at every run (go build is incremental), never
# taken from a binary left over from another build; FAKE names one explicitly.
FAKE_GIVEN = "FAKE" in os.environ
FAKE = Path(os.environ.get("FAKE", BUILD / "bin" / "fake-prefect"))
DEPLOYMENT_ID = "00000000-0000-4000-8000-000000000001"
CREATE_PATH = f"/api/deployments/{DEPLOYMENT_ID}/create_flow_run"


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def machine() -> dict:
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {"nproc": os.cpu_count(), "load": " ".join(load)}


def provenance() -> dict:
    """What a result was measured on: the commit (and whether the tree had changes), the
    machine's core count and load, and when."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed), "changed_files": changed,
            "nproc": os.cpu_count(), "load_start": machine()["load"],
            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_result(name: str, doc: dict) -> Path:
    """Writes a small result document to docs/bench-results/<name>.json (the tables in
    docs/benchmarks.md are rendered from these by tests/bench/render_tables.py)."""
    out = ROOT / "docs" / "bench-results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(doc)
    doc.setdefault("provenance", provenance())
    doc["provenance"]["load_end"] = machine()["load"]
    out.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
    return out


def load1() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def spread(values: list[float]) -> dict:
    v = [x for x in values if x is not None]
    if not v:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


# ---------------------------------------------------------------------------------------------
# asyncio HTTP client


class HttpError(Exception):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None,
                      close: bool = False) -> tuple[int, dict, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        if close:
            head.append("Connection: close")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise HttpError("connection closed without an answer")
        parts = status_line.split()
        if len(parts) < 2:
            raise HttpError(f"bad status line {status_line!r}")
        status = int(parts[1])
        headers = {}
        while True:
            line = await self.reader.readline()
            if not line:
                raise HttpError("connection closed in headers")
            if line in (b"\r\n", b"\n"):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        data = await self.reader.readexactly(n) if n else b""
        if close or headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, data

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:
                pass
        self.reader = self.writer = None


class Pool:
    """Keep-alive connections, as an httpx client keeps them; a failed one is discarded."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.idle: list[Conn] = []

    async def request(self, method: str, path: str, body: bytes | None, timeout: float):
        conn = self.idle.pop() if self.idle else Conn(self.host, self.port)
        try:
            result = await asyncio.wait_for(conn.request(method, path, body), timeout)
        except BaseException:
            conn.close()
            raise
        if conn.writer is not None:
            self.idle.append(conn)
        return result

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()


# ---------------------------------------------------------------------------------------------
# blocking helpers


def http_json(url: str, body=None, method: str | None = None, timeout: float = 60,
              headers: dict | None = None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)


def http_text(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_http(url: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not answering: {url}")
            time.sleep(0.05)


def metric_values(text: str, name: str) -> dict[str, float]:
    """Samples of one metric family from Prometheus text: {labels-string: value}."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            if key == name or key.startswith(name + "{"):
                out[key[len(name):]] = float(value)
    return out


def metric_sum(text: str, name: str, contains: str = "") -> float:
    return sum(v for k, v in metric_values(text, name).items() if contains in k)


class Fake:
    """The Go fake Prefect, started once per benchmark."""

    def __init__(self, port: int, log: Path):
        if not FAKE_GIVEN:
            if shutil.which("go") is None:
                raise SystemExit("go is needed to build tests/fake_prefect (or set FAKE)")
            FAKE.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["go", "build", "-o", str(FAKE), "."], cwd=ROOT / "tests" / "fake_prefect",
                           check=True)
        elif not FAKE.exists():
            raise SystemExit(f"FAKE={FAKE} does not exist")
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([str(FAKE), "--listen", f"127.0.0.1:{port}"],
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT)
        wait_http(self.url + "/api/health")

    def reset(self, config: dict) -> None:
        http_json(self.url + "/_fake/reset", b"{}")
        if config:
            http_json(self.url + "/_fake/config", config)

    def config(self, config: dict) -> None:
        http_json(self.url + "/_fake/config", config)

    def stats(self) -> dict:
        return http_json(self.url + "/_fake/stats")[1]

    def timeline(self) -> list[dict]:
        return http_json(self.url + "/_fake/timeline")[1]["buckets"]

    def runs(self) -> list[dict]:
        return http_json(self.url + "/_fake/runs", timeout=120)[1]["runs"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Floodgated:
    """One floodgated process with a fresh SQLite file, or on the store `db` names (a
    postgresql:// URL: one replica among those on that database)."""

    def __init__(self, port: int, prefect_url: str, workdir: Path, extra: list[str] | None = None,
                 log_level: str | None = "warn", db: str | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        if db is None:
            path = workdir / f"fg-{port}.db"
            for p in workdir.glob(path.name + "*"):
                p.unlink()
            db = f"sqlite://{path}"
        self.url = f"http://127.0.0.1:{port}"
        self.args = [str(FLOODGATED), "--listen", f"127.0.0.1:{port}", "--prefect-api-url",
                     prefect_url, "--db", db]
        if log_level:
            self.args += ["--log-level", log_level]
        self.args += extra or []
        self.log = open(workdir / "floodgated.log", "a")
        self.log.write("# " + " ".join(self.args) + "\n")
        self.log.flush()
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(self.url + "/healthz")

    def metrics(self) -> str:
        return http_text(self.url + "/metrics")

    def vm(self, field: str) -> int:
        """kB of a /proc/PID/status field (VmRSS, VmHWM)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def post_batch(self, batch: dict) -> dict:
        return http_json(self.url + "/v1/batches", batch)[1]

    def wait_final(self, batch_id: str, limit_s: float = 3600) -> dict:
        version = 0
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            _, b = http_json(f"{self.url}/v1/batches/{batch_id}?wait_s=5&after_version={version}")
            if b["state"] in ("COMPLETED", "FAILED", "CANCELLED"):
                return b
            version = b["version"]
        raise TimeoutError(f"batch {batch_id} not final after {limit_s} s")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def kill(self) -> None:
        """kill -9: no drain, no release of leases."""
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def iso_ts(s: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


# --- Benchmarks of one floodgated batch per run against the fake (start_pacing.py,
# backlog_gating.py): their shared command line, ports and request counting.

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_api_requests(stats: dict) -> int:
    """The fake's requests from floodgated: all but its health and readiness probes."""
    req = stats["requests"]
    return stats["total_requests"] - req.get("health", 0) - req.get("ready", 0)


def batch_bench_parser(description: str, name: str, children: int, reps: int,
                       limit_s: float) -> argparse.ArgumentParser:
    """The options every batch benchmark has; `name` names its JSON and its /tmp folder."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--children", type=int, default=children)
    ap.add_argument("--reps", type=int, default=reps)
    ap.add_argument("--limit-s", type=float, default=limit_s, help="longest wait for one batch")
    ap.add_argument("--out", type=Path, default=Path(f"/tmp/bench-{name.replace('_', '-')}"),
                    help="logs (fake, floodgated, SQLite files)")
    ap.add_argument("--record", default=name, help="name of the docs/bench-results JSON file")
    ap.add_argument("--no-record", action="store_true", help="print only")
    return ap


def run_batch_bench(args, runs) -> tuple[dict, list[dict]]:
    """Starts one fake, calls `runs(fake)` for the rows, stops it; (provenance, rows)."""
    raise_fd_limit()
    args.out.mkdir(parents=True, exist_ok=True)
    prov = provenance()
    fake = Fake(free_port(), args.out / "fake.log")
    try:
        return prov, runs(fake)
    finally:
        fake.stop()
