"""Listing runs and batches (filters, cursors) and the long-poll."""

import threading
import time

from harness import DEMO_DEPLOYMENT, wait_until


def test_runs_pagination_covers_every_index_exactly_once(api, fake):
    total = 1234
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False,
                    "runs": [{"parameters": {"i": i}} for i in range(total)]})
    api.wait_state(b["id"], timeout=60)
    for limit in (1000, 100, 7):
        seen, after, pages = [], None, 0
        while True:
            q = {"limit": limit}
            if after is not None:
                q["after"] = after
            r = api.runs_page(b["id"], **q)
            assert r.status == 200
            page = r.json
            pages += 1
            assert len(page["runs"]) <= limit
            seen += [x["index"] for x in page["runs"]]
            after = page["next"]
            if after is None:
                break
            assert len(page["runs"]) == limit
            assert pages < 1000
        assert seen == list(range(total)), f"limit={limit}"
    # Default page size is 100.
    r = api.runs_page(b["id"])
    assert [x["index"] for x in r.json["runs"]] == list(range(100))
    assert r.json["next"] is not None


def test_runs_state_filter(api, fake):
    # Item 3 and 7 fail permanently (missing a required parameter), the rest launch.
    fake.add_deployment(flow_name="strict", name="dep", required=["x"],
                        properties={"x": {"type": "integer"}}, enforce_parameter_schema=True)
    runs = [{"parameters": {"x": i}} for i in range(12)]
    runs[3] = {"parameters": {}}
    runs[7] = {"parameters": {"x": "seven"}}
    b = api.submit({"deployment": "strict/dep", "track": False, "runs": runs,
                    "tolerated_failure_count": 5})
    final = api.wait_state(b["id"], timeout=30)
    assert final["counts"]["LAUNCH_FAILED"] == 2 and final["counts"]["LAUNCHED"] == 10, final
    failed = api.all_runs(b["id"], state="LAUNCH_FAILED")
    assert [x["index"] for x in failed] == [3, 7]
    assert all(x["state"] == "LAUNCH_FAILED" and x["flow_run_id"] is None for x in failed)
    launched = api.all_runs(b["id"], state="LAUNCHED")
    assert [x["index"] for x in launched] == [i for i in range(12) if i not in (3, 7)]
    # A filtered page with a small limit paginates over matching items only.
    r = api.runs_page(b["id"], state="LAUNCHED", limit=4)
    assert [x["index"] for x in r.json["runs"]] == [0, 1, 2, 4]
    r2 = api.runs_page(b["id"], state="LAUNCHED", limit=4, after=r.json["next"])
    assert [x["index"] for x in r2.json["runs"]] == [5, 6, 8, 9]
    assert api.all_runs(b["id"], state="SKIPPED") == []
    r = api.runs_page(b["id"], state="COMPLETED")
    assert r.json == {"runs": [], "next": None}


def test_list_batches_state_filter_and_pagination(api, fake):
    ids = []
    for i in range(7):
        ids.append(api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{}]})["id"])
    for bid in ids:
        api.wait_state(bid, timeout=30)
    # Two batches that cannot launch stay RUNNING/QUEUED: a very slow launch rate.
    slow = [api.submit({"deployment": DEMO_DEPLOYMENT, "track": False,
                        "runs": [{}] * 20, "limits": {"launches_per_second": 0.01}})["id"]
            for _ in range(2)]
    paused = slow[1]
    assert api.control(paused, "pause").status == 200
    everything = api.all_batches(limit=3)
    assert [b["id"] for b in everything] == ids + slow
    # Pages of 3: 9 batches -> 3 pages, the cursor of each page leads to the next.
    r1 = api.batches(limit=3)
    assert [b["id"] for b in r1.json["batches"]] == ids[:3] and r1.json["next"]
    r2 = api.batches(limit=3, after=r1.json["next"])
    assert [b["id"] for b in r2.json["batches"]] == ids[3:6]
    completed = api.all_batches(state="COMPLETED", limit=2)
    assert [b["id"] for b in completed] == ids
    assert all(b["state"] == "COMPLETED" for b in completed)
    assert [b["id"] for b in api.all_batches(state="PAUSED")] == [paused]
    assert [b["id"] for b in api.all_batches(state="RUNNING")] == [slow[0]]
    assert api.all_batches(state="CANCELLED") == []
    assert api.control(slow[0], "cancel").status == 200
    assert api.control(paused, "cancel").status == 200
    wait_until(lambda: [b["id"] for b in api.all_batches(state="CANCELLED")] == slow, 5,
               what="both batches listed as CANCELLED")


def test_list_batches_state_filter_agrees_with_the_batch_at_once(api, fake):
    """Right after POST .../cancel answers CANCELLED, GET /v1/batches?state=CANCELLED lists the
    batch, and ?state=RUNNING does not (read-your-writes, as GET /v1/batches/{id} gives)."""
    for attempt in range(5):
        b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{}] * 5,
                        "limits": {"launches_per_second": 0.01}})
        r = api.control(b["id"], "cancel")
        assert r.status == 200 and r.json["state"] == "CANCELLED"
        cancelled = [x["id"] for x in api.all_batches(state="CANCELLED")]
        assert b["id"] in cancelled, f"attempt {attempt}: a CANCELLED batch is missing from ?state=CANCELLED"
        assert b["id"] not in [x["id"] for x in api.all_batches(state="RUNNING")]


def _stable_version(api, bid, quiet=0.3, timeout=10):
    """Waits until the batch's version stops changing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    b = api.batch(bid)
    while time.monotonic() < deadline:
        nb = api.batch(bid, wait_s=quiet, after_version=b["version"])
        if nb["version"] == b["version"]:
            return nb
        b = nb
    raise AssertionError("batch never settled")


def test_long_poll_returns_when_the_version_changes(api, fake):
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{}] * 10,
                    "limits": {"launches_per_second": 0.01}})
    assert api.control(b["id"], "pause").status == 200
    settled = _stable_version(api, b["id"])
    v = settled["version"]
    result = {}

    def poll():
        t0 = time.monotonic()
        result["batch"] = api.batch(b["id"], wait_s=30, after_version=v)
        result["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.5)
    assert "batch" not in result, "the long-poll returned before anything changed"
    assert api.control(b["id"], "resume").status == 200
    t.join(40)
    assert not t.is_alive()
    print(f"long-poll returned after {result['elapsed']:.3f}s (change at 0.5s, wait_s 30)")
    # It returned on the change, not at wait_s (generous for a loaded machine).
    assert result["elapsed"] < 15, result["elapsed"]
    assert result["batch"]["version"] > v
    assert result["batch"]["state"] == "RUNNING"
    api.control(b["id"], "cancel")


def test_long_poll_waits_about_wait_s_without_change(api, fake):
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{}]})
    final = api.wait_state(b["id"], timeout=30)
    t0 = time.monotonic()
    same = api.batch(b["id"], wait_s=1.5, after_version=final["version"])
    elapsed = time.monotonic() - t0
    print(f"long-poll without change returned after {elapsed:.3f}s (wait_s=1.5)")
    assert 1.4 <= elapsed < 10, elapsed
    assert same["version"] == final["version"]
    assert same == api.batch(b["id"])
    # after_version below the current version answers at once.
    t0 = time.monotonic()
    older = api.batch(b["id"], wait_s=30, after_version=final["version"] - 1)
    assert time.monotonic() - t0 < 15  # at once, not after wait_s
    assert older["version"] == final["version"]
    # wait_s alone waits for a change after the current version.
    t0 = time.monotonic()
    api.batch(b["id"], wait_s=1)
    elapsed = time.monotonic() - t0
    print(f"wait_s=1 alone returned after {elapsed:.3f}s")
    assert 0.9 <= elapsed < 10, elapsed


def test_long_poll_on_stored_batch_after_restart(fg, fake):
    """After a restart a finished batch comes from the store; long-poll still answers within
    the contract (at once or after wait_s) with the same batch."""
    api = fg.client
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{}] * 3})
    final = api.wait_state(b["id"], timeout=30)
    fg.restart(graceful=True)
    api = fg.client
    t0 = time.monotonic()
    again = api.batch(b["id"], wait_s=1, after_version=final["version"])
    elapsed = time.monotonic() - t0
    print(f"long-poll on a stored batch returned after {elapsed:.3f}s (wait_s=1)")
    assert elapsed < 10, elapsed
    for k in ("id", "state", "total", "counts", "created_at", "finished_at"):
        assert again[k] == final[k], k
    assert [r["index"] for r in api.all_runs(b["id"])] == [0, 1, 2]
