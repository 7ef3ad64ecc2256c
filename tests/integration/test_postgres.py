"""floodgated on PostgreSQL (--db postgresql://...): a batch to COMPLETED, exactly once across a
kill -9 and a restart on the same database (the restarted process takes the batch over as a new
replica, see test_replicas.py), the password kept out of the log, and a restart of the server mid-batch waited out (FLOODGATE_TEST_PG_RESTART names
the command that restarts it; scripts/postgres-lane.sh sets it).

Needs a server: FLOODGATE_TEST_PG_URL (scripts/pg-cluster.sh start prints one). Without it the
tests fail under CI (CI=true) and are skipped with the reason outside CI. Each test gets its own
schema (search_path), dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import uuid

import pytest

from harness import DEMO_DEPLOYMENT, assert_exactly_once, tail, wait_until

PG_URL = os.environ.get("FLOODGATE_TEST_PG_URL", "")
IN_CI = os.environ.get("CI", "") in ("true", "1")
REASON = ("FLOODGATE_TEST_PG_URL is not set, so floodgated cannot be tested on PostgreSQL; start "
          "a throw-away server with `scripts/pg-cluster.sh start` and export "
          "FLOODGATE_TEST_PG_URL=$(scripts/pg-cluster.sh url)")


def psql() -> str:
    for candidate in (shutil.which("psql"), "/usr/lib/postgresql/15/bin/psql"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("psql not found (apt-get install postgresql-client)")


def run_sql(url: str, sql: str) -> str:
    out = subprocess.run([psql(), url, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def with_option(url: str, option: str) -> str:
    return url + ("&" if "?" in url else "?") + option


@pytest.fixture
def pg_url():
    """The test server's URL with a fresh schema first on the search_path."""
    if not PG_URL:
        if IN_CI:
            pytest.fail(REASON + " (CI=true: failing instead of skipping)")
        pytest.skip(REASON)
    schema = f"fg_it_{uuid.uuid4().hex[:12]}"
    run_sql(PG_URL, f"CREATE SCHEMA {schema}")
    yield with_option(PG_URL, "options=" + urllib.parse.quote(f"-csearch_path={schema}"))
    run_sql(PG_URL, f"DROP SCHEMA {schema} CASCADE")


def password_of(url: str) -> str:
    return urllib.parse.urlsplit(url).password or ""


def batch(total: int, **extra) -> dict:
    return {"deployment": DEMO_DEPLOYMENT, "track": False,
            "runs": [{"parameters": {"i": i}} for i in range(total)], **extra}


def test_batch_completes_and_the_password_is_not_logged(start_floodgated, fake, pg_url):
    fg = start_floodgated("--db", pg_url)
    b = fg.client.submit(batch(20))
    final = fg.client.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["LAUNCHED"] == 20
    assert_exactly_once(fake.runs(), b["id"], 20)

    # What floodgated wrote is in the database, as an operator would see it with psql. The
    # writer flushes every 50 ms, after the API already answers from memory: wait for it.
    wait_until(lambda: run_sql(pg_url, f"SELECT state, total FROM batches WHERE id = '{b['id']}'")
               == "COMPLETED|20", 10, what="the batch's end in the database")
    wait_until(lambda: run_sql(pg_url, "SELECT count(*) FROM items WHERE state = 'LAUNCHED' "
                                       "AND flow_run_id <> ''") == "20",
               10, what="the launched items in the database")
    assert run_sql(pg_url, "SELECT max(version) FROM schema_migrations") == "4"

    log = fg.log_path.read_text(errors="replace")
    # The harness's own "==== start" line shows the command; floodgated's lines must not.
    logged = "\n".join(line for line in log.splitlines() if not line.startswith("===="))
    password = password_of(pg_url)
    if password:
        assert password not in logged, tail(fg.log_path)
        assert "floodgated started" in logged and ":***@" in logged, tail(fg.log_path)


@pytest.mark.time_limit(120)
def test_kill_dash_nine_and_restart_finish_the_batch_exactly_once(start_floodgated, fake, pg_url):
    total = 600
    # A restarted floodgated is a new replica: it takes the batch over once the killed one's
    # lease ends.
    fg = start_floodgated("--db", pg_url, "--bulk", "false", "--lease-ttl-s", "3")
    fake.config(latency_ms=20)
    b = fg.client.submit(batch(total))
    seen = wait_until(lambda: (n := fake.stats()["runs"]) >= total // 3 and n, 60, 0.01,
                      what="a third of the runs on the fake")
    fg.kill()
    assert seen < total, "the batch finished before the kill; make it slower"
    fg.start()
    final = fg.client.wait_state(b["id"], timeout=90)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["LAUNCHED"] == total
    assert_exactly_once(fake.runs(), b["id"], total)
    stats = fake.stats()
    assert stats["runs_without_key"] == 0
    ids = {r["idempotency_key"]: r["id"] for r in fake.runs()}
    for it in fg.client.all_runs(b["id"]):
        assert it["flow_run_id"] == ids[f"floodgate:{b['id']}:{it['index']}"], it

    # And a new batch after the restart runs as well.
    again = fg.client.submit(batch(10))
    assert fg.client.wait_state(again["id"], timeout=30)["state"] == "COMPLETED"
    print(f"killed at {seen} of {total} runs; existing={stats['existing']}")


RESTART_CMD = os.environ.get("FLOODGATE_TEST_PG_RESTART", "")


@pytest.mark.time_limit(120)
def test_a_server_restart_mid_batch_is_waited_out(start_floodgated, fake, pg_url):
    """The server goes away mid-batch under two replicas, each holding a batch: writes and
    heartbeats fail and are retried, /readyz says not ready, and once the server is back both
    batches complete, every child created once, each on the replica that held it."""
    if not RESTART_CMD:
        reason = ("FLOODGATE_TEST_PG_RESTART (a command that restarts the test server, e.g. "
                  "`bash scripts/pg-cluster.sh restart`) is not set")
        if IN_CI:
            pytest.fail(reason + " (CI=true: failing instead of skipping)")
        pytest.skip(reason)
    total = 400
    fg = start_floodgated("--db", pg_url, "--bulk", "false", "--rate", "100/s")
    other = start_floodgated("--db", pg_url, "--bulk", "false", "--rate", "100/s", name="other")
    b = fg.client.submit(batch(total))
    b2 = other.client.submit(batch(total))
    wait_until(lambda: fake.stats()["runs"] >= total // 2, 60, 0.01, what="a quarter of the runs of each batch")
    # /readyz, watched while the server restarts (and a moment after, until writes succeed).
    readiness: list[int] = []
    stop_watching = threading.Event()

    other_readiness: list[int] = []

    def watch() -> None:
        while not stop_watching.is_set():
            readiness.append(fg.client.request("GET", "/readyz").status)
            other_readiness.append(other.client.request("GET", "/readyz").status)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    subprocess.run(RESTART_CMD, shell=True, check=True, timeout=60)
    runs_at_restart = fake.stats()["runs"]
    final = fg.client.wait_state(b["id"], timeout=90)
    assert final["state"] == "COMPLETED", final
    assert other.client.wait_state(b2["id"], timeout=90)["state"] == "COMPLETED"
    runs = fake.runs()
    for job in (b, b2):
        assert_exactly_once([r for r in runs if job["id"] in r["idempotency_key"]], job["id"], total)
    # Neither lost its batch to the other over the outage (it would have exited 3).
    assert fg.running and other.running
    log = fg.log_path.read_text(errors="replace")
    logs = log + other.log_path.read_text(errors="replace")
    # Each replica notices it by a write or a heartbeat that failed (one may have had no write
    # to make during the outage).
    assert "store write failed; retrying" in logs, "the restart went unnoticed; nothing was tested"
    for replica in (fg, other):
        text = replica.log_path.read_text(errors="replace")
        assert "store write failed; retrying" in text or \
            "cannot reach the shared store" in text, tail(replica.log_path)
    wait_until(lambda: readiness and readiness[-1] == 200 and other_readiness[-1] == 200, 60,
               what="/readyz ready again once writes succeed")
    stop_watching.set()
    watcher.join()
    assert 503 in readiness, f"/readyz never said not ready during the outage: {set(readiness)}"
    assert 503 in other_readiness, set(other_readiness)
    # Everything reaches the database once the server is back (the writer flushes every 50 ms;
    # wait for it), and a floodgated started afresh on it (after kill -9) has nothing left to do.
    wait_until(lambda: run_sql(pg_url, f"SELECT state FROM batches WHERE id = '{b['id']}'")
               == "COMPLETED" and run_sql(pg_url, "SELECT count(*) FROM items WHERE state = "
                                                  "'LAUNCHED' AND flow_run_id <> ''")
               == str(2 * total),
               30, what="the batch's end in the database")
    before = fake.stats()
    fg.kill()
    fg.start()
    again = fg.client.batch(b["id"])
    assert again["state"] == "COMPLETED" and again["counts"]["LAUNCHED"] == total, again
    after = fake.stats()
    assert (after["runs"], after["existing"]) == (2 * total, before["existing"]), (before, after)
    print(f"restarted the server at {runs_at_restart} of {total} runs; "
          f"{log.count('store write failed')} failed writes retried")


# --- Chunked appends on PostgreSQL (issue 16, item 6); the same flow on SQLite is in
# test_chunked_batches.py ---

def test_chunks_survive_kill_dash_nine_on_postgres(start_floodgated, fake, pg_url):
    fg = start_floodgated("--db", pg_url)
    body = {"deployment": DEMO_DEPLOYMENT, "track": False, "sealed": False,
            "runs": [{"parameters": {"i": i}} for i in range(3)]}
    b = fg.client.submit(body)

    def append(start, n, key, expect):
        r = fg.client.request("POST", f"/v1/batches/{b['id']}/runs",
                              {"runs": [{"parameters": {"i": i}} for i in range(start, start + n)]},
                              headers={"Idempotency-Key": key})
        assert r.status == expect, r
        return r.json

    assert append(3, 10, "c1", 201)["first_index"] == 3
    fg.kill()
    fg.start()
    assert fg.client.batch(b["id"])["total"] == 13
    assert append(3, 10, "c1", 200)["first_index"] == 3  # the same chunk again: nothing new
    assert append(13, 5, "c2", 201)["total"] == 18
    assert fg.client.control(b["id"], "seal").status == 200
    final = fg.client.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED" and final["total"] == 18, final
    assert_exactly_once(fake.runs(), b["id"], 18)
