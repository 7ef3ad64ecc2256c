"""Fixtures: the real floodgated against the Go fake Prefect, each on a free port.

- ``FLOODGATED_BIN``: the service binary (default ``<repo>/build/ci/service/floodgated``).
- The fake is built with ``go build`` from ``<repo>/tests/fake_prefect`` into a temp folder
  (or taken from ``FAKE_PREFECT_BIN`` when set).

Tests that need these are skipped, with the reason, when the binary or Go is missing, except
in CI (``CI`` set to a true value, or ``FLOODGATE_REQUIRE_PREREQS=1`` as scripts/test.sh sets):
there a missing prerequisite fails the tests, so that a suite that ran nothing cannot pass.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
PKG_ROOT = HERE.parent  # client/python
REPO = PKG_ROOT.parent.parent

sys.path.insert(0, str(PKG_ROOT))

from floodgate import FloodgateClient  # noqa: E402

def _strict() -> bool:
    flags = (os.environ.get("CI", ""), os.environ.get("FLOODGATE_REQUIRE_PREREQS", ""))
    return any(f.strip().lower() in ("1", "true", "yes") for f in flags)


def missing_prerequisite(reason: str) -> None:
    """Skips the test, or fails it in CI (see the module's docstring)."""
    if _strict():
        pytest.fail(f"prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


FAST_SCHEDULE = {"scheduled_ms": 50, "pending_ms": 50, "running_ms": 100}


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Any:
    """A bare JSON request (for the fake's /_fake control endpoints)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        text = r.read().decode()
    return json.loads(text) if text else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FakePrefect:
    """The running fake Prefect."""

    url: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen  # type: ignore[type-arg]

    @property
    def api_url(self) -> str:
        return self.url + "/api"

    def config(self, **cfg: Any) -> Any:
        return http_json("POST", self.url + "/_fake/config", cfg)

    def runs(self) -> List[Dict[str, Any]]:
        return list(http_json("GET", self.url + "/_fake/runs")["runs"])

    def runs_by_id(self) -> Dict[str, Dict[str, Any]]:
        return {r["id"]: r for r in self.runs()}

    def task_runs(self) -> List[Dict[str, Any]]:
        return list(http_json("GET", self.url + "/_fake/task_runs")["task_runs"])

    def stats(self) -> Dict[str, Any]:
        return dict(http_json("GET", self.url + "/_fake/stats"))


@dataclass
class Floodgated:
    """A running floodgated."""

    url: str
    port: int
    db: str
    prefect_api_url: str
    proc: Optional[subprocess.Popen] = None  # type: ignore[type-arg]
    log_path: Optional[Path] = None
    _log: Any = field(default=None, repr=False)

    def start(self) -> None:
        assert self.log_path is not None
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [floodgated_bin(), "--listen", f"127.0.0.1:{self.port}",
             "--prefect-api-url", self.prefect_api_url, "--db", self.db,
             "--log-level", "warn"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"floodgated exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                http_json("GET", self.url + "/healthz", timeout=1)
                return
            except (OSError, ValueError):
                time.sleep(0.05)
        raise RuntimeError("floodgated did not answer /healthz within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


def floodgated_bin() -> str:
    return os.environ.get("FLOODGATED_BIN") or str(REPO / "build/ci/service/floodgated")


@pytest.fixture(scope="session")
def fake_prefect_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    given = os.environ.get("FAKE_PREFECT_BIN")
    if given:
        if not os.access(given, os.X_OK):
            missing_prerequisite(f"FAKE_PREFECT_BIN={given} is not an executable file")
        return given
    go = shutil.which("go")
    if go is None:
        missing_prerequisite("go is not installed: cannot build tests/fake_prefect")
    out = tmp_path_factory.mktemp("fake-prefect") / "fake-prefect"
    subprocess.run([go, "build", "-o", str(out), "."], cwd=REPO / "tests/fake_prefect",
                   check=True, capture_output=True, timeout=300)
    return str(out)


@pytest.fixture(scope="session")
def fake(fake_prefect_bin: str) -> Iterator[FakePrefect]:
    proc = subprocess.Popen([fake_prefect_bin, "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"fake Prefect did not start: {line!r}")
    fp = FakePrefect(url="http://" + line.split("listening on ", 1)[1].strip(), proc=proc)
    fp.config(run_schedule=FAST_SCHEDULE)
    yield fp
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _start_floodgated(fake: FakePrefect, folder: Path) -> Floodgated:
    binary = floodgated_bin()
    if not os.access(binary, os.X_OK):
        missing_prerequisite(f"floodgated binary not found at {binary} (set FLOODGATED_BIN)")
    last: Optional[Exception] = None
    for _ in range(3):  # a free port can be taken between the check and the bind
        port = free_port()
        fg = Floodgated(url=f"http://127.0.0.1:{port}", port=port,
                        db=f"sqlite://{folder / 'floodgate.db'}", prefect_api_url=fake.api_url,
                        log_path=folder / "floodgated.log")
        try:
            fg.start()
            return fg
        except RuntimeError as e:
            fg.stop()
            last = e
    raise RuntimeError(f"could not start floodgated: {last}")


@pytest.fixture(scope="session")
def floodgated(fake: FakePrefect, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Floodgated]:
    fg = _start_floodgated(fake, tmp_path_factory.mktemp("floodgated"))
    yield fg
    fg.stop()


@pytest.fixture
def own_floodgated(fake: FakePrefect, tmp_path: Path) -> Iterator[Floodgated]:
    """A floodgated of the test's own (to stop and restart)."""
    fg = _start_floodgated(fake, tmp_path)
    yield fg
    fg.stop()


@pytest.fixture
def client(floodgated: Floodgated) -> FloodgateClient:
    return FloodgateClient(floodgated.url, timeout=10, retries=2, backoff_s=0.05)


@pytest.fixture
def label() -> Dict[str, str]:
    """A unique batch label, to find the batches a test made."""
    return {"test": uuid.uuid4().hex}


def find_batches(client: FloodgateClient, labels: Dict[str, str]) -> List[Any]:
    return [b for b in client.list_batches() if b.raw.get("labels") == labels]


def slow(ms: int = 5000, **extra: Any) -> Dict[str, Any]:
    """Parameters that keep a fake child RUNNING for ``ms`` milliseconds."""
    return {"__fake_running_ms": ms, **extra}
