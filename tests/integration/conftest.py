"""Fixtures: binaries, a fresh fake Prefect and a fresh floodgated per test, per-test time
limits, and floodgated's log tail in the report of a failed test."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from harness import FakePrefect, Floodgated, tail
from openapi_check import OpenApiChecker

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SPEC = REPO / "proto" / "openapi.yaml"
DEFAULT_TIME_LIMIT_S = 60

_procs_key = pytest.StashKey[list]()


# --------------------------------------------------------------------------------------------
# Binaries

@pytest.fixture(scope="session")
def floodgated_bin() -> Path:
    path = Path(os.environ.get("FLOODGATED_BIN", REPO / "build/ci/service/floodgated"))
    if not path.is_absolute():
        path = REPO / path
    if not os.access(path, os.X_OK):
        pytest.exit(f"floodgated binary not found at {path} (set FLOODGATED_BIN)", returncode=2)
    return path


@pytest.fixture(scope="session")
def fake_prefect_bin(tmp_path_factory) -> Path:
    env_bin = os.environ.get("FAKE_PREFECT_BIN")
    if env_bin:
        return Path(env_bin)
    go = shutil.which("go")
    if go is None:
        pytest.exit("go is needed to build tests/fake_prefect (or set FAKE_PREFECT_BIN)", returncode=2)
    out = tmp_path_factory.mktemp("fake-prefect-bin") / "fake-prefect"
    subprocess.run([go, "build", "-o", str(out), "."], cwd=REPO / "tests" / "fake_prefect",
                   check=True, timeout=600)
    return out


@pytest.fixture(scope="session")
def checker() -> OpenApiChecker:
    return OpenApiChecker(SPEC)


# --------------------------------------------------------------------------------------------
# Processes (each registered on the test item so a failure report shows their logs)

def _register(request, proc) -> None:
    request.node.stash.setdefault(_procs_key, []).append(proc)


@pytest.fixture
def fake(fake_prefect_bin, tmp_path, request):
    """A fresh fake Prefect for this test."""
    f = FakePrefect(fake_prefect_bin, tmp_path / "fake.log")
    _register(request, f)
    yield f
    f.stop()


@pytest.fixture
def start_floodgated(floodgated_bin, fake, tmp_path, checker, request):
    """Factory: start_floodgated(*args, env={...}) -> running Floodgated (against `fake`)."""
    started: list[Floodgated] = []

    def start(*args: str, env: dict[str, str] | None = None, name: str | None = None,
              prefect_api_url: str | None = None, wait: bool = True) -> Floodgated:
        fg = Floodgated(floodgated_bin, fake, tmp_path, name or f"floodgated{len(started)}",
                        list(args), env, checker, prefect_api_url)
        started.append(fg)
        _register(request, fg)
        if wait:
            fg.start()
        return fg

    yield start
    for fg in started:
        fg.stop()


@pytest.fixture
def fg(start_floodgated):
    """A fresh floodgated with default settings and a temp SQLite db."""
    return start_floodgated()


@pytest.fixture
def api(fg):
    return fg.client


# --------------------------------------------------------------------------------------------
# Time limits: @pytest.mark.time_limit(seconds); the default is DEFAULT_TIME_LIMIT_S.

class TestTimeLimitExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def _time_limit(request):
    marker = request.node.get_closest_marker("time_limit")
    seconds = marker.args[0] if marker else DEFAULT_TIME_LIMIT_S

    def on_alarm(signum, frame):
        raise TestTimeLimitExceeded(f"test exceeded its time limit of {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------------------------
# Reports: floodgated's (and the fake's) log tail on failure

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for p in item.stash.get(_procs_key, []):
            if isinstance(p, Floodgated):
                rep.sections.append((f"{p.name} log tail ({p.log_path})", tail(p.log_path, 40)))
            else:
                text = tail(p.log_path, 20)
                if text.strip():
                    rep.sections.append((f"fake-prefect log tail ({p.log_path})", text))
