"""Following children to their final state, crash re-launches, max_running, as_subflow, and
the metrics."""

import collections
import json
import threading
import time

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
    peak, samples = 0, 0
    stop = time.monotonic() + 60
    while time.monotonic() < stop:
        runs = fake.runs_of(b["id"])
        live = sum(1 for r in runs if r["state_type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"))
        peak = max(peak, live)
        samples += 1
        if len(runs) == total and live == 0:
            break
        time.sleep(0.02)
    final = api.wait_state(b["id"], timeout=30)
    print(f"peak unfinished children on the fake: {peak} (cap {cap}) over {samples} samples")
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
