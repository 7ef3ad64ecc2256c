"""Following children to their final state, crash re-launches, max_running, as_subflow, and
the metrics."""

import collections
import json
import threading
import time

import pytest

from harness import (DEMO_DEPLOYMENT, DEMO_DEPLOYMENT_ID, assert_exactly_once, parse_metrics,
                     raw_request, wait_until)

QUICK_LIFE = {"scheduled_ms": 100, "pending_ms": 100, "running_ms": 100}


def test_tracked_batch_completes_with_child_states(api, fake):
    fake.config(run_schedule=QUICK_LIFE)
    total = 30
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": [{"parameters": {"i": i}} for i in range(total)]})
    assert b["track"] is True  # the default
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["COMPLETED"] == total, final
    items = api.all_runs(b["id"])
    assert all(it["state"] == "COMPLETED" and it["flow_run_state"] == "Completed" for it in items), items[:3]
    assert_exactly_once(fake.runs(), b["id"], total)
    stats = fake.stats()
    # Cheap bulk reads, not one poll per child.
    assert stats["requests"].get("read_flow_run", 0) == 0
    assert 1 <= stats["requests"]["flow_runs_filter"] <= 10, stats["requests"]


def test_tracked_failures_within_tolerance(api, fake):
    fake.config(run_schedule=QUICK_LIFE)
    runs = [{"parameters": {"i": i}} for i in range(10)]
    for i in (1, 4):
        runs[i]["parameters"]["__fake_final"] = "FAILED"
    runs[6]["parameters"]["__fake_final"] = "CANCELLED"
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": runs, "tolerated_failure_count": 2})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    c = final["counts"]
    assert c["FAILED"] == 2 and c["CANCELLED"] == 1 and c["COMPLETED"] == 7, c
    assert final["failures"] == 2
    items = api.all_runs(b["id"])
    assert items[1]["state"] == "FAILED" and items[1]["flow_run_state"] == "Failed"
    assert items[6]["state"] == "CANCELLED"
    assert [x["index"] for x in api.all_runs(b["id"], state="FAILED")] == [1, 4]


def test_tracked_failures_beyond_tolerance_fail_the_batch(api, fake):
    fake.config(run_schedule={"scheduled_ms": 100, "pending_ms": 0, "running_ms": 0})
    runs = [{"parameters": {"i": i, "__fake_final": "FAILED" if i == 0 else "COMPLETED",
                            "__fake_running_ms": 0 if i == 0 else 5000}} for i in range(20)]
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": runs,
                    "limits": {"max_running": 2}})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "FAILED", final
    c = final["counts"]
    assert c["FAILED"] == 1, c
    assert c["SKIPPED"] >= 17, c  # never launched after the batch failed
    assert len(fake.runs_of(b["id"])) == 20 - c["SKIPPED"]
    assert fake.unfinished_peak(b["id"]) <= 2


def test_crashed_child_is_relaunched_once(api, fake):
    fake.config(run_schedule=QUICK_LIFE)
    runs = [{"parameters": {"i": i}} for i in range(4)]
    runs[2]["parameters"]["__fake_final"] = "CRASHED"
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": runs, "relaunch_crashed": 1,
                    "tolerated_failure_count": 1})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["CRASHED"] == 1 and final["counts"]["COMPLETED"] == 3, final
    item = api.all_runs(b["id"])[2]
    assert item["state"] == "CRASHED", item
    mine = [r for r in fake.runs_of(b["id"]) if r["parameters"].get("i") == 2]
    keys = sorted(r["idempotency_key"] for r in mine)
    assert keys == [f"floodgate:{b['id']}:2", f"floodgate:{b['id']}:2:r1"], keys
    by_key = {r["idempotency_key"]: r for r in mine}
    assert item["flow_run_id"] == by_key[f"floodgate:{b['id']}:2:r1"]["id"]
    assert item["earlier_runs"] == [{"flow_run_id": by_key[f"floodgate:{b['id']}:2"]["id"],
                                     "state": "CRASHED"}], item
    assert item["attempts"] >= 1
    assert all(r["state_type"] == "CRASHED" for r in mine)
    # Other items were launched exactly once.
    for i in (0, 1, 3):
        assert len([r for r in fake.runs_of(b["id"]) if r["parameters"].get("i") == i]) == 1


def test_tracking_resumes_after_restart(fg, fake):
    """Children launched before a SIGKILL are still followed to their final state after it."""
    fake.config(run_schedule={"scheduled_ms": 0, "pending_ms": 0, "running_ms": 1500})
    runs = [{"parameters": {"i": i}} for i in range(6)]
    runs[5]["parameters"]["__fake_final"] = "FAILED"
    b = fg.client.submit({"deployment": DEMO_DEPLOYMENT, "runs": runs, "tolerated_failure_count": 1})
    wait_until(lambda: fg.client.batch(b["id"])["counts"]["LAUNCHED"] == 6, 10, what="all launched")
    time.sleep(0.3)  # the store catches up
    fg.kill()
    fg.start()
    final = fg.client.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["COMPLETED"] == 5 and final["counts"]["FAILED"] == 1, final
    assert_exactly_once(fake.runs(), b["id"], 6)
    assert [r["index"] for r in fg.client.all_runs(b["id"], state="FAILED")] == [5]


def test_crashed_child_not_relaunched_by_default(api, fake):
    fake.config(run_schedule=QUICK_LIFE)
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "tolerated_failure_percentage": 100,
                    "runs": [{"parameters": {"__fake_final": "CRASHED"}}]})
    final = api.wait_state(b["id"], timeout=30)
    assert final["counts"]["CRASHED"] == 1
    assert "earlier_runs" not in api.all_runs(b["id"])[0]
    assert len(fake.runs()) == 1


def test_max_running_caps_unfinished_children(api, fake):
    cap, total = 5, 20
    fake.config(run_schedule={"scheduled_ms": 0, "pending_ms": 0, "running_ms": 300})
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "limits": {"max_running": cap},
                    "runs": [{"parameters": {"i": i}} for i in range(total)]})
    final = api.wait_state(b["id"], timeout=60)
    peak = fake.unfinished_peak(b["id"])
    print(f"peak unfinished children on the fake: {peak} (cap {cap})")
    assert final["state"] == "COMPLETED", final
    assert peak <= cap, f"the fake saw {peak} unfinished children with max_running {cap}"
    assert peak >= 2
    assert_exactly_once(fake.runs(), b["id"], total)


def test_as_subflow_links_children_under_the_parent(api, fake):
    # A parent flow run, created on the fake as Prefect would have it.
    r = raw_request(fake.base, "POST", f"/api/deployments/{DEMO_DEPLOYMENT_ID}/create_flow_run",
                    json.dumps({"name": "parent"}).encode(), {"Content-Type": "application/json"})
    assert r.status == 201, r
    parent = r.json["id"]
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "parent_flow_run_id": parent,
                    "runs": [{"parameters": {"i": i}} for i in range(5)]})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    tasks = {t["id"]: t for t in fake.task_runs()}
    assert len(tasks) == 5
    for t in tasks.values():
        assert t["flow_run_id"] == parent
        assert t["task_key"].startswith("prefect.deployments.flow_runs.run_deployment.")
    children = fake.runs_of(b["id"])
    assert len(children) == 5
    assert {c["parent_task_run_id"] for c in children} == set(tasks)
    for it in api.all_runs(b["id"]):
        child = next(c for c in children if c["id"] == it["flow_run_id"])
        assert it["parent_task_run_id"] == child["parent_task_run_id"]


EXPECTED_METRICS = [
    "floodgate_launches_total", "floodgate_prefect_requests_total",
    "floodgate_prefect_request_duration_seconds", "floodgate_retries_total",
    "floodgate_prefect_requests_in_flight", "floodgate_token_bucket_tokens", "floodgate_items",
    "floodgate_batches", "floodgate_build_info",
]


def test_metrics_exposes_the_documented_families(api, fake):
    # The first create answers 503 for sure, so there is a retry to count.
    fake.config(error_rate=1.0, fault_paths=["create_flow_run"], latency_ms=50)
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{}] * 50,
                    "retry": {"initial_delay_s": 0.2, "max_delay_s": 0.5, "max_attempts": 30}})
    wait_until(lambda: fake.stats()["faults"]["error"] > 0, 10, 0.005, what="a 503")
    fake.config(error_rate=0.0, latency_ms=0)
    api.wait_state(b["id"], timeout=30)
    r = api.request("GET", "/metrics")
    assert r.status == 200
    assert r.content_type == "text/plain"
    text = r.body.decode()
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    for name in EXPECTED_METRICS:
        assert name in families, f"{name} missing from /metrics"
    m = parse_metrics(text)
    assert m['floodgate_launches_total{outcome="created"}'] == 50
    assert any(k.startswith("floodgate_build_info{") and v == 1 for k, v in m.items())
    assert any(k.startswith("floodgate_prefect_request_duration_seconds_bucket{") for k in m)
    assert sum(v for k, v in m.items() if k.startswith("floodgate_retries_total")) > 0
    assert m["floodgate_prefect_requests_in_flight"] == 0


def test_state_gauges_count_what_exists(api, fake):
    """floodgate_items / floodgate_batches are gauges "by state": never negative, and they
    add up to the items and batches floodgate knows."""
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{}] * 7})
    api.wait_state(b["id"], timeout=30)
    m = parse_metrics(api.metrics())
    items = {k: v for k, v in m.items() if k.startswith("floodgate_items{")}
    batches = {k: v for k, v in m.items() if k.startswith("floodgate_batches{")}
    negative = {k: v for k, v in {**items, **batches}.items() if v < 0}
    assert not negative, f"negative gauges: {negative}"
    assert items['floodgate_items{state="LAUNCHED"}'] == 7
    assert sum(items.values()) == 7, items
    assert batches['floodgate_batches{state="COMPLETED"}'] == 1
    assert sum(batches.values()) == 1, batches


def test_status_page_and_readyz(api):
    r = api.request("GET", "/")
    assert r.status == 200 and r.content_type == "text/html"
    assert b"<html" in r.body.lower()
    r = api.request("GET", "/readyz")
    assert r.status == 200
    assert r.json["status"] == "ready"
    r = api.request("GET", "/healthz")
    assert r.json == {"status": "ok"}


def test_readyz_not_ready_when_prefect_is_down(start_floodgated, fake):
    api = start_floodgated().client
    fake.config(down=True)
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{}] * 5,
                    "retry": {"initial_delay_s": 0.01, "max_delay_s": 0.05, "max_attempts": 1000}})
    r = wait_until(lambda: (x := api.request("GET", "/readyz")).status == 503 and x, 30, 0.1,
                   what="/readyz to say 503 while Prefect is down")
    assert "circuit breaker" in r.json["reason"], r.json
    fake.config(down=False)
    wait_until(lambda: api.request("GET", "/readyz").status == 200, 60, 0.2, what="ready again")
    assert api.wait_state(b["id"], timeout=60)["state"] == "COMPLETED"
    assert_exactly_once(fake.runs(), b["id"], 5)


def test_tracking_reads_at_most_200_ids_and_shows_states_while_running(api, fake):
    """450 children: every filter read names at most 200 ids; items show the child's state name
    while it runs ("Running"), then the final one."""
    fake.config(run_schedule={"scheduled_ms": 0, "pending_ms": 0, "running_ms": 60_000})
    total = 450
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": [{"parameters": {"i": i}} for i in range(total)]})

    def all_running():
        items = api.all_runs(b["id"])
        return all(it["state"] == "LAUNCHED" and it["flow_run_state"] == "Running"
                   for it in items) and items

    items = wait_until(all_running, 20, 0.2, what="every item LAUNCHED and Running")
    assert len(items) == total
    running = api.batch(b["id"])
    assert running["state"] == "RUNNING" and running["counts"]["LAUNCHED"] == total, running
    fake.advance_clock(61_000)
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["COMPLETED"] == total, final
    items = api.all_runs(b["id"])
    assert all(it["state"] == "COMPLETED" and it["flow_run_state"] == "Completed" for it in items)
    stats = fake.stats()
    assert 1 <= stats["filter_max_ids"] <= 200, stats["filter_max_ids"]
    assert stats["filter_max_ids"] >= 100, "children were not read in bulk"
    assert stats["requests"].get("read_flow_run", 0) == 0
    assert_exactly_once(fake.runs(), b["id"], total)


def test_crashed_child_relaunched_up_to_n_times(api, fake):
    """relaunch_crashed 2: a child that crashes every time runs three times, with keys
    …:i, …:i:r1, …:i:r2; the item ends CRASHED and lists every run."""
    fake.config(run_schedule=QUICK_LIFE)
    runs = [{"parameters": {"i": i}} for i in range(3)]
    runs[1]["parameters"]["__fake_final"] = "CRASHED"
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": runs, "relaunch_crashed": 2,
                    "tolerated_failure_count": 1})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["CRASHED"] == 1 and final["counts"]["COMPLETED"] == 2, final
    mine = {r["idempotency_key"]: r for r in fake.runs_of(b["id"]) if r["parameters"]["i"] == 1}
    base = f"floodgate:{b['id']}:1"
    assert sorted(mine) == [base, f"{base}:r1", f"{base}:r2"], sorted(mine)
    assert all(r["state_type"] == "CRASHED" for r in mine.values())
    item = api.all_runs(b["id"])[1]
    assert item["state"] == "CRASHED" and item["flow_run_state"] == "Crashed", item
    assert item["flow_run_id"] == mine[f"{base}:r2"]["id"]
    assert item["earlier_runs"] == [{"flow_run_id": mine[base]["id"], "state": "CRASHED"},
                                    {"flow_run_id": mine[f"{base}:r1"]["id"], "state": "CRASHED"}], item
    assert item["attempts"] >= 1
    assert len(fake.runs_of(b["id"])) == 5


@pytest.mark.parametrize("on_cancel", ["abandon", "cancel_children"])
def test_tolerance_exceeded_by_children_applies_on_cancel(api, fake, on_cancel):
    """Tracked failures beyond a percentage fail the batch at once: unlaunched items are SKIPPED
    and the children still running are left alone or moved to CANCELLING, per on_cancel."""
    fake.config(run_schedule={"scheduled_ms": 0, "pending_ms": 0, "running_ms": 60_000},
                cancel_delay_ms=60_000)
    total, cap = 20, 6
    runs = [{"parameters": {"i": i}} for i in range(total)]
    for i in (0, 1, 2):  # fail at once; 10% of 20 tolerates 2
        runs[i]["parameters"].update(__fake_final="FAILED", __fake_running_ms=0)
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": runs, "on_cancel": on_cancel,
                    "tolerated_failure_percentage": 10, "limits": {"max_running": cap}})
    final = api.wait_state(b["id"], "FAILED", timeout=30)
    assert final["tolerated_failures"] == 2 and final["failures"] == 3, final
    c = final["counts"]
    assert c["FAILED"] == 3, c
    assert sum(c.values()) == total, c
    assert c["PENDING"] == c["RETRY_WAIT"] == c["LAUNCHING"] == 0, c
    assert c["LAUNCHED"] >= cap - 3 and c["SKIPPED"] == total - 3 - c["LAUNCHED"], c
    assert fake.unfinished_peak(b["id"]) <= cap
    live = {it["flow_run_id"] for it in api.all_runs(b["id"], state="LAUNCHED")}
    assert {r["id"] for r in fake.runs_of(b["id"])} - live == {
        it["flow_run_id"] for it in api.all_runs(b["id"], state="FAILED")}
    if on_cancel == "cancel_children":
        recs = wait_until(lambda: (x := fake.set_states()) and len(x) >= len(live) and x, 15, 0.1,
                          what="a cancel for each running child")
        assert sorted(r["flow_run_id"] for r in recs) == sorted(live), recs
        assert all(r["type"] == "CANCELLING" and r["status"] == "ACCEPT" for r in recs), recs
        # A fresh transition id per bulk_set_state request, shared by the runs it names.
        assert len({r["transition_id"] for r in recs}) == \
            fake.stats()["requests"]["bulk_set_state"], recs
        wait_until(lambda: all(r["state_type"] == "CANCELLING" for r in fake.runs_of(b["id"])
                               if r["id"] in live), 5, what="children CANCELLING on the fake")
    else:
        # Tracking goes on after the end (two more reads), and nothing is cancelled.
        reads = fake.stats()["requests"]["flow_runs_filter"]
        wait_until(lambda: fake.stats()["requests"]["flow_runs_filter"] >= reads + 2, 30, 0.1,
                   what="two more tracking reads")
        assert fake.set_states() == []
        assert all(r["state_type"] == "RUNNING" for r in fake.runs_of(b["id"]) if r["id"] in live)
    assert len(fake.runs_of(b["id"])) == 3 + len(live), "runs were launched after the batch failed"


def test_long_poll_wakes_on_each_child_change(api, fake):
    """A parent long-polling a tracked batch is woken by each change Prefect reports (not by
    wait_s running out); every answer's counts add up to total, and the last one is the outcome."""
    total = 4
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "tolerated_failure_count": 1,
                    "runs": [{"parameters": {"i": i}} for i in range(total)]})
    bid = b["id"]
    wait_until(lambda: all(it["flow_run_state"] == "Scheduled" for it in api.all_runs(bid)) and
               len(api.all_runs(bid)) == total, 15, 0.1, what="children seen Scheduled")
    runs = sorted(fake.runs_of(bid), key=lambda r: r["parameters"]["i"])
    v = api.batch(bid)["version"]
    seen = []
    for run, end in zip(runs, ["COMPLETED", "FAILED", "RUNNING", "COMPLETED"]):
        fake.set_run_state(run["id"], end)
        want = {"COMPLETED": "Completed", "FAILED": "Failed", "RUNNING": "Running"}[end]
        while True:
            nb = api.batch(bid, wait_s=30, after_version=v)
            assert nb["version"] > v, f"long-poll ran out after wait_s with no change (v={v})"
            assert sum(nb["counts"].values()) == total, nb["counts"]
            v = nb["version"]
            seen.append(nb)
            item = api.all_runs(bid)[run["parameters"]["i"]]
            if item["flow_run_state"] == want:
                break
        assert item["state"] == ("LAUNCHED" if end == "RUNNING" else end), item
    # The third child is still running; ending it ends the batch.
    fake.set_run_state(runs[2]["id"], "COMPLETED")
    while nb["state"] == "RUNNING":
        nb = api.batch(bid, wait_s=30, after_version=v)
        assert nb["version"] > v
        assert sum(nb["counts"].values()) == total, nb["counts"]
        v = nb["version"]
    assert nb["state"] == "COMPLETED", nb
    assert nb["counts"]["COMPLETED"] == 3 and nb["counts"]["FAILED"] == 1, nb
    assert nb["finished_at"] is not None
    completed = [x["counts"]["COMPLETED"] for x in seen]
    assert completed == sorted(completed), "counts went backwards"


@pytest.mark.time_limit(90)
def test_as_subflow_one_placeholder_per_child_across_sigkill(fg, fake):
    """Placeholders are idempotent like the children: after a kill -9 mid-batch every child still
    has exactly one placeholder task run in the parent, and no placeholder is shared."""
    parent = fake.create_run(name="parent-flow", state="RUNNING")["id"]
    fake.config(latency_ms=20)
    total = 40
    b = fg.client.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "parent_flow_run_id": parent,
                          "limits": {"max_in_flight": 2},
                          "runs": [{"parameters": {"i": i}} for i in range(total)]})
    # Placeholders go first and their children are created together, so the kill lands between
    # the two writes of many children.
    wait_until(lambda: len(fake.task_runs()) >= 8, 20, 0.01, what="some placeholders created")
    fg.kill()
    n_at_kill = len(fake.runs_of(b["id"]))
    assert n_at_kill < total, "make the batch slower: it finished before the kill"
    fake.config(latency_ms=0)
    fg.start()
    final = fg.client.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    children = fake.runs_of(b["id"])
    assert_exactly_once(children, b["id"], total)
    tasks = {t["id"]: t for t in fake.task_runs()}
    assert len(tasks) == total, f"{len(tasks)} placeholder task runs for {total} children"
    assert all(t["flow_run_id"] == parent for t in tasks.values())
    assert len({t["dynamic_key"] for t in tasks.values()}) == total
    ptrs = [c["parent_task_run_id"] for c in children]
    assert len(set(ptrs)) == total and set(ptrs) == set(tasks), "children share or miss placeholders"
    for it in fg.client.all_runs(b["id"]):
        child = next(c for c in children if c["id"] == it["flow_run_id"])
        assert it["parent_task_run_id"] == child["parent_task_run_id"], it


def test_as_subflow_creates_go_in_bulk_after_the_placeholders(api, fake):
    """Under a parent each child needs its own placeholder task run (Prefect has no bulk task
    run create), but the children themselves are created in bulk once their placeholders exist:
    about 1 write per child rather than 2."""
    parent = fake.create_run(name="parent-flow", state="RUNNING")["id"]
    total = 200
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "parent_flow_run_id": parent,
                    "runs": [{"parameters": {"i": i}} for i in range(total)]})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    children = fake.runs_of(b["id"])
    assert_exactly_once(children, b["id"], total)
    req = fake.stats()["requests"]
    creates = req.get("create_flow_run", 0) + req.get("create_flow_run_bulk", 0)
    print(f"{total} children under a parent: {req}")
    assert req["task_runs"] == total, req
    assert creates <= total // 10, f"{creates} create requests for {total} children: {req}"
    tasks = {t["id"] for t in fake.task_runs()}
    assert {c["parent_task_run_id"] for c in children} == tasks


def test_as_subflow_relaunched_child_is_linked_under_the_parent(api, fake):
    parent = fake.create_run(name="parent-flow", state="RUNNING")["id"]
    fake.config(run_schedule=QUICK_LIFE)
    runs = [{"parameters": {"i": 0, "__fake_final": "CRASHED"}}, {"parameters": {"i": 1}}]
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "parent_flow_run_id": parent, "relaunch_crashed": 1,
                    "tolerated_failure_count": 1, "runs": runs})
    final = api.wait_state(b["id"], timeout=30)
    assert final["counts"]["CRASHED"] == 1 and final["counts"]["COMPLETED"] == 1, final
    tasks = {t["id"]: t for t in fake.task_runs()}
    crashed = [c for c in fake.runs_of(b["id"]) if c["parameters"]["i"] == 0]
    assert len(crashed) == 2
    for c in crashed:
        assert c["parent_task_run_id"] in tasks, c
        assert tasks[c["parent_task_run_id"]]["flow_run_id"] == parent
    item = api.all_runs(b["id"])[0]
    relaunched = next(c for c in crashed if c["idempotency_key"].endswith(":r1"))
    assert item["flow_run_id"] == relaunched["id"]
    assert item["parent_task_run_id"] == relaunched["parent_task_run_id"], item
