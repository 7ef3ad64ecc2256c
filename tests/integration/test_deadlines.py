"""Deadlines for children (issue 17, item 2) against the fake Prefect: a child that never starts
or is deleted in Prefect is reported STUCK, cancelled and FAILED, or cancelled and launched
again, as the batch's on_deadline says; a batch that ended early follows the children it left
running to their end; and after a restart of floodgated the deadlines still count from the
run's own times in Prefect (created, start_time), not again from the restart."""

import re
import time
from datetime import datetime

import pytest

from harness import DEMO_DEPLOYMENT, parse_metrics, wait_until

QUICK_LIFE = {"scheduled_ms": 100, "pending_ms": 100, "running_ms": 100}


def _runs_of_item(fake, batch_id, i):
    return sorted((r for r in fake.runs_of(batch_id) if r["parameters"].get("i") == i),
                  key=lambda r: r["idempotency_key"])


def _deadline_metric(api, reason, action):
    m = parse_metrics(api.metrics())
    return m.get(f'floodgate_child_deadlines_total{{action="{action}",reason="{reason}"}}', 0.0)


@pytest.mark.parametrize("on_deadline", ["report", "fail", "relaunch"])
def test_a_child_that_never_starts_meets_its_start_deadline(api, fake, on_deadline):
    fake.config(run_schedule=QUICK_LIFE)
    runs = [{"parameters": {"i": i}} for i in range(6)]
    runs[1]["parameters"]["__fake_never_start"] = "PENDING"  # the worker died after claiming it
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": runs, "start_deadline_s": 3,
                    "on_deadline": on_deadline, "tolerated_failure_count": 1})
    assert b["start_deadline_s"] == 3 and b["on_deadline"] == on_deadline, b
    final = api.wait_state(b["id"], timeout=60)
    c = final["counts"]
    # Tolerated: the batch ends COMPLETED with five children done and the stuck one accounted.
    assert final["state"] == "COMPLETED", final
    assert c["COMPLETED"] == 5, c
    item = api.all_runs(b["id"])[1]
    mine = _runs_of_item(fake, b["id"], 1)
    if on_deadline == "report":
        assert c["STUCK"] == 1 and final["failures"] == 1, c
        assert item["state"] == "STUCK", item
        assert "start deadline (3 s) passed" in item["last_error"], item
        assert len(mine) == 1 and mine[0]["state_type"] == "PENDING", mine  # left alone
        assert not fake.set_states()
    elif on_deadline == "fail":
        assert c["FAILED"] == 1, c
        assert item["state"] == "FAILED" and "start deadline (3 s) passed" in item["last_error"]
        assert len(mine) == 1, mine
        cancels = [s for s in fake.set_states() if s["flow_run_id"] == mine[0]["id"]]
        assert cancels and cancels[0]["type"] in ("CANCELLING", "CANCELLED"), cancels
    else:
        # Relaunched once (relaunch_crashed 0 gives one relaunch on deadline); the new run never
        # starts either (same parameters), so the item fails with no relaunch left.
        assert c["FAILED"] == 1, c
        keys = [r["idempotency_key"] for r in mine]
        assert keys == [f"floodgate:{b['id']}:1", f"floodgate:{b['id']}:1:r1"], keys
        assert item["earlier_runs"] == [{"flow_run_id": mine[0]["id"],
                                         "state": "START_DEADLINE"}], item
        assert "no relaunch left" in item["last_error"], item
        cancelled = {s["flow_run_id"] for s in fake.set_states()}
        assert cancelled == {mine[0]["id"], mine[1]["id"]}, cancelled
        assert _deadline_metric(api, "start_deadline", "relaunch") >= 1
    # Every other child was created once.
    for i in (0, 2, 3, 4, 5):
        assert len(_runs_of_item(fake, b["id"], i)) == 1


def test_a_child_deleted_in_prefect_is_relaunched(api, fake):
    fake.config(run_schedule=QUICK_LIFE)
    runs = [{"parameters": {"i": i}} for i in range(3)]
    runs[0]["parameters"]["__fake_running_ms"] = 4000
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": runs, "on_deadline": "relaunch"})
    wait_until(lambda: api.all_runs(b["id"])[0]["flow_run_state"] == "Running", timeout=30)
    first = _runs_of_item(fake, b["id"], 0)[0]
    fake.delete_run(first["id"])
    final = api.wait_state(b["id"], timeout=60)
    assert final["state"] == "COMPLETED", final
    item = api.all_runs(b["id"])[0]
    assert item["earlier_runs"] == [{"flow_run_id": first["id"], "state": "DELETED"}], item
    mine = _runs_of_item(fake, b["id"], 0)
    assert [r["idempotency_key"] for r in mine] == [f"floodgate:{b['id']}:0:r1"], mine
    assert item["flow_run_id"] == mine[0]["id"]
    assert not fake.set_states()  # nothing to cancel: it was gone
    assert _deadline_metric(api, "deleted", "relaunch") == 1


def test_a_batch_that_failed_early_follows_the_children_it_left_running(api, fake):
    fake.config(run_schedule={"scheduled_ms": 0, "pending_ms": 0, "running_ms": 3000})
    runs = [{"parameters": {"i": i}} for i in range(4)]
    runs[0]["parameters"].update({"__fake_final": "FAILED", "__fake_running_ms": 100})
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": runs})
    failed = api.wait_state(b["id"], timeout=30)
    assert failed["state"] == "FAILED", failed
    assert failed["counts"]["LAUNCHED"] == 3, failed["counts"]
    # The batch has ended; its three running children still reach their final state in the API.
    wait_until(lambda: api.batch(b["id"])["counts"]["COMPLETED"] == 3, timeout=30)
    after = api.batch(b["id"])
    assert after["state"] == "FAILED" and after["counts"]["LAUNCHED"] == 0, after


def _epoch(iso):
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.time_limit(90)
@pytest.mark.parametrize("deadline", ["start", "run"])
def test_deadlines_count_from_prefects_times_across_a_restart(fg, fake, deadline):
    """floodgated is killed 9 s into a 12 s deadline and started again: the child is past its
    deadline about 12 s after it was created (start) or started (run) in Prefect, plus a read
    interval; counting again from the restart would take 20 s or more."""
    limit_s, kill_at_s, slack_s = 12, 9, 7
    fake.config(run_schedule=QUICK_LIFE)
    runs = [{"parameters": {"i": i}} for i in range(3)]
    if deadline == "start":
        runs[1]["parameters"]["__fake_never_start"] = "SCHEDULED"
    else:
        runs[1]["parameters"]["__fake_running_ms"] = 600_000
    b = fg.client.submit({"deployment": DEMO_DEPLOYMENT, "runs": runs,
                          f"{deadline}_deadline_s": limit_s, "on_deadline": "report",
                          "tolerated_failure_count": 1})
    field = "created" if deadline == "start" else "start_time"
    run = wait_until(lambda: next((r for r in _runs_of_item(fake, b["id"], 1) if r[field]), None),
                     timeout=20, what=f"the child's {field}")
    since = _epoch(run[field])
    time.sleep(max(0.0, since + kill_at_s - time.time()))
    fg.kill()
    time.sleep(1)
    fg.start()
    restarted = time.time() - since
    item = wait_until(lambda: (lambda r: r if r["state"] == "STUCK" else None)(
        fg.client.all_runs(b["id"])[1]), timeout=30, interval=0.1, what="the child STUCK")
    measured = time.time() - since
    said = re.search(r"still \w+ (\d+) s after it", item["last_error"])
    print(f"{deadline} deadline {limit_s} s: restarted {restarted:.1f} s after the run's {field}, "
          f"STUCK {measured:.1f} s after it (error says {said and said.group(1)} s)")
    assert f"{deadline} deadline ({limit_s} s) passed" in item["last_error"], item
    assert limit_s - 0.5 <= measured <= limit_s + slack_s, (measured, item)
    assert said and limit_s <= int(said.group(1)) <= limit_s + slack_s, item["last_error"]
    final = fg.client.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED" and final["counts"]["STUCK"] == 1, final
