"""Fixtures for floodgate's e2e tests against a real Prefect server.

Once per session: `scripts/prefect-env.sh up` starts a lean Prefect server (FG_PREFECT_LEAN:
no services the tests do not need), a `process` work pool `floodgate-e2e` with a process worker,
a second process pool `floodgate-e2e-idle` that no worker polls, and the deployments in
tests/e2e/flows, on their own port and run dir (so the demo started by scripts/run-demo.sh is
left alone). Per test: a floodgated on a free port with its own SQLite file.

Tests whose children must really run ask for the `worker` fixture (it makes sure the worker is
online and, on Prefect before 3.9, that the slots of earlier cases' runs are free again: see
SHARED_RUNNER_BEFORE). Tests about floodgate crashing or Prefect going away use
`demo-flow/idle` and a `Completer` (helpers.py): a thread that plays the worker through
Prefect's REST API (proposes RUNNING, then COMPLETED, with the server's orchestration rules) so
that a child costs two state changes instead of a Python process.

Environment knobs:
  FLOODGATED              path of the binary (default: build/{ci,release,debug}/service/floodgated)
  FG_E2E_PREFECT_PORT     port of the test Prefect server (4210)
  FG_E2E_RUN_DIR          run dir of the test Prefect (<repo>/.run/e2e-prefect)
  FG_E2E_START_TIMEOUT    seconds to wait for the server and the worker to come up (600)
  FG_E2E_WORKER_LIMIT     concurrent flow runs of the worker (5; more means more SQLite write
                          races in the server, 503s and client back-offs, not more throughput)
  FG_E2E_KEEP_PREFECT=1   leave server and worker running after the session (faster reruns)
  FG_E2E_FRESH_DB=0       keep the database of a server this session starts (default: empty)
  FG_E2E_BIG_N            children in the big batch test (200)
  FG_E2E_BIG_DEPLOYMENT   the big batch's deployment (demo-flow/light; demo-flow/demo runs
                          Prefect's own engine per child: ~5 CPU-s a child, 10+ minutes)
  FG_E2E_FLOODGATED_ARGS  extra floodgated flags, e.g. "--bulk false --log-level debug"
  FG_PREFECT_LOGGING_LEVEL  Prefect's log level in the worker and its flow runs (WARNING; INFO
                          logs the worker's submissions and "Flow run limit reached")
  FG_PREFECT_RUNNER_POLL_FREQUENCY  the worker's Runner check period (10 s); on Prefect 3.2 it
                          paces how soon a finished run's slot is free (SHARED_RUNNER_BEFORE)
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from helpers import FloodgateProcess, Prefect, find_floodgated, wait_until

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "prefect-env.sh"

# Prefect 3.2's process worker frees a flow run's --limit slot only when that run's
# cancellation check finds the worker's shared Runner with no flow-run process at all. The
# check comes every PREFECT_RUNNER_POLL_FREQUENCY s (FG_PREFECT_RUNNER_POLL_FREQUENCY, else
# Prefect's 10: the e2e worker runs with no PREFECT_* variable of its own), up to 30 % later
# with its jitter, after two API reads (seconds each on a loaded machine, hence 10 s on top).
# A case whose children arrive before those checks finds the earlier case's slots still taken,
# and each slot freed later goes to the next child at once (the worker polls every second), so
# the Runner is never empty again: the children run one at a time (docs/compatibility.md).
# 3.9.1 runs each flow run in an executor of its own and frees its slot when the run's process
# exits. The releases between 3.2 and 3.9 were not read, so they get the wait too (it costs
# time, never a wrong result).
SHARED_RUNNER_BEFORE = (3, 9)
RUNNER_POLL_S = float(os.environ.get("FG_PREFECT_RUNNER_POLL_FREQUENCY") or 10)
SLOT_RELEASE_LAG_S = RUNNER_POLL_S * 1.3 + 10


class PrefectEnv:
    """The session's Prefect: server, pool, deployments and worker, driven by prefect-env.sh."""

    def __init__(self):
        self.port = int(os.environ.get("FG_E2E_PREFECT_PORT", "4210"))
        self.run_dir = Path(os.environ.get("FG_E2E_RUN_DIR", str(ROOT / ".run" / "e2e-prefect")))
        self.pool = "floodgate-e2e"
        self.idle_pool = "floodgate-e2e-idle"
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.env = dict(os.environ)
        # The tests talk to this Prefect only; never inherit a user's Prefect profile/API.
        for k in list(self.env):
            if k.startswith("PREFECT_"):
                del self.env[k]
        self.env.update(
            FG_PREFECT_PORT=str(self.port),
            FG_PREFECT_RUN_DIR=str(self.run_dir),
            FG_PREFECT_POOL=self.pool,
            FG_PREFECT_IDLE_POOL=self.idle_pool,
            FG_PREFECT_LEAN="true",
            FG_PREFECT_WORKER_LIMIT=os.environ.get("FG_E2E_WORKER_LIMIT", "5"),
            # A first start migrates a new database: 20 s on an idle machine, over 3 minutes
            # at load 19 (seen on a shared 2-core machine); the wait ends as soon as it is up.
            FG_PREFECT_START_TIMEOUT=os.environ.get("FG_E2E_START_TIMEOUT", "600"),
        )
        self.api = Prefect(self.api_url)
        # Set by a case that left the server running with other settings (the busy case:
        # all services on): the next test that needs Prefect restarts the lean one first.
        # The busy case runs last, so in a whole run nobody pays for that restart; the
        # session's teardown stops whatever server and worker are running.
        self.restore_lean = False
        # A case has run flow runs on the worker since it (re)started (see settle_worker).
        self.worker_used = False
        self._slot_release_lag_s: float | None = None

    def script(self, *args: str, timeout: float = 900) -> str:
        r = subprocess.run(["bash", str(SCRIPT), *args], env=self.env, capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"prefect-env.sh {' '.join(args)} failed ({r.returncode}):\n"
                               f"{r.stdout}\n{r.stderr}")
        return r.stdout + r.stderr

    def up(self):
        return self.script("up")

    def down(self):
        return self.script("down")

    def server_stop(self):
        return self.script("server-stop")

    def server_start(self):
        return self.script("server-start")

    def worker_stop(self):
        self.worker_used = False
        return self.script("worker-stop")

    def worker_start(self):
        self.worker_used = False
        return self.script("worker-start")

    def ensure_lean(self):
        """The session's lean server again (and no worker: the `worker` fixture starts it),
        after a case that ran another one."""
        if not self.restore_lean:
            return
        t0 = time.monotonic()
        self.worker_stop()
        self.server_stop()
        self.server_start()
        wait_until("Prefect health", self.api.healthy, 120)
        self.restore_lean = False
        print(f"\n[e2e] lean Prefect server restored in {time.monotonic() - t0:.1f}s")

    def worker_pid(self) -> int | None:
        try:
            pid = int((self.run_dir / "worker.pid").read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def flow_run_pids(self) -> list[int]:
        """The worker's flow-run processes: whatever the `prefect worker` process (the
        supervisor's child, see prefect-env.sh) has started and is still running."""
        sup = self.worker_pid()
        return [] if sup is None else [p for w in _children(sup) for p in _descendants(w)]

    def slot_release_lag_s(self) -> float:
        """How long after its last flow-run process exits this worker may still hold slots."""
        if self._slot_release_lag_s is None:
            version = str(self.api.get("/admin/version"))
            major, minor = (int(x) for x in version.split(".")[:2])
            shared = (major, minor) < SHARED_RUNNER_BEFORE
            self._slot_release_lag_s = SLOT_RELEASE_LAG_S if shared else 0.0
        return self._slot_release_lag_s

    def settle_worker(self) -> str | None:
        """Before a case that needs the worker's whole --limit: on a worker that holds slots
        after its runs end (Prefect before 3.9, see SHARED_RUNNER_BEFORE), wait until the
        earlier cases' flow-run processes are gone, then for the Runner's check that frees
        their slots. Nothing to wait for on a fresh worker or on 3.9."""
        if not self.worker_used or self.slot_release_lag_s() == 0:
            return None
        t0 = time.monotonic()
        try:
            wait_until("the earlier cases' flow-run processes to exit",
                       lambda: not self.flow_run_pids(), 180, 0.5)
        except AssertionError as e:
            return f"{e}; going on with {len(self.flow_run_pids())} still running"
        gone = time.monotonic()
        time.sleep(self.slot_release_lag_s())
        return (f"worker settled: flow-run processes gone after {gone - t0:.1f}s, then "
                f"{self.slot_release_lag_s():.0f}s for Prefect's Runner to free their slots")

    def worker_online(self) -> bool:
        name = f"floodgate-worker-{self.port}"
        try:
            workers = self.api.post(f"/work_pools/{self.pool}/workers/filter", {})
        except Exception:  # noqa: BLE001
            return False
        return any(w["name"] == name and w.get("status") == "ONLINE" for w in workers)

    def ensure_worker(self, timeout: float = 60) -> str:
        """Make sure the worker runs and is online (e.g. after a server outage): keep it if
        it is (or comes back by itself), else restart it."""
        if self.worker_pid() is not None:
            try:
                wait_until("worker online", self.worker_online, timeout, 1)
                return "worker online"
            except AssertionError:
                pass
        running = self.worker_pid() is not None
        self.worker_stop()
        self.worker_start()
        return "worker restarted (it was not online)" if running else "worker started"


@pytest.fixture(scope="session")
def prefect_env():
    env = PrefectEnv()
    t0 = time.monotonic()
    # A server this session starts gets an empty database (no runs left over from an earlier,
    # interrupted session for the worker to pick up; FG_E2E_FRESH_DB=0 keeps it). A server
    # still running from FG_E2E_KEEP_PREFECT=1 is reused as it is.
    if not env.api.healthy() and os.environ.get("FG_E2E_FRESH_DB", "1") != "0":
        env.script("reset-db")
    # Server, pools, deployments; the worker is started by the `worker` fixture.
    for step in ("server-start", "pool", "deploy"):
        env.script(step)
    wait_until("Prefect health", env.api.healthy, 60)
    print(f"\n[e2e] Prefect up at {env.api_url} in {time.monotonic() - t0:.1f}s")
    yield env
    if os.environ.get("FG_E2E_KEEP_PREFECT") != "1":
        env.down()


@pytest.fixture(autouse=True)
def _lean_prefect(request):
    """Every test that uses the session's Prefect gets the lean server (see ensure_lean)."""
    if "prefect_env" in request.fixturenames:
        request.getfixturevalue("prefect_env").ensure_lean()


@pytest.fixture
def worker(prefect_env):
    """The process worker on pool floodgate-e2e, online, with all of its --limit free."""
    t0 = time.monotonic()
    how = prefect_env.ensure_worker()
    if how != "worker online" or time.monotonic() - t0 > 2:
        print(f"\n[e2e] {how} in {time.monotonic() - t0:.1f}s")
    settled = prefect_env.settle_worker()
    if settled:
        print(f"\n[e2e] {settled}")
    yield prefect_env
    prefect_env.worker_used = True


def _children(pid: int) -> list[int]:
    r = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def _descendants(pid: int) -> list[int]:
    return [d for c in _children(pid) for d in (c, *_descendants(c))]


@pytest.fixture(scope="session")
def floodgated_binary() -> Path:
    b = find_floodgated()
    if b is None or not b.exists():
        # A failure, not a skip: a suite that quietly runs nothing must not look green.
        pytest.fail(f"floodgated is not built ({b or 'no build/{ci,release,debug}'}): build it "
                    "or set FLOODGATED", pytrace=False)
    return b


@pytest.fixture
def floodgate(floodgated_binary, prefect_env, tmp_path, request):
    """A fresh floodgated (own SQLite file) for one test."""
    fg = FloodgateProcess(floodgated_binary, prefect_env.api_url, tmp_path / "floodgate.db",
                          tmp_path / "floodgated.log",
                          shlex.split(os.environ.get("FG_E2E_FLOODGATED_ARGS", "")))
    fg.start()
    yield fg
    fg.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        tail = "\n".join(line[:300] for line in fg.log_tail(30).splitlines())
        print(f"\n[e2e] floodgated log ({fg.log_path}), last lines:\n{tail}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def pytest_collection_modifyitems(session, config, items):
    """The busy case last, whichever files come after it by name: it leaves a non-lean server
    running (see ensure_lean), which a later case would have to restart (~30 s)."""
    items.sort(key=lambda item: item.path.name == "test_e2e_busy.py")  # stable: order kept
