"""Parent watch (issue 4, item 7): a batch with `parent_flow_run_id` follows its parent flow run;
when the parent reaches a final state while children still run, the batch's `on_cancel` policy
is applied to the children: `cancel_children` moves them to CANCELLING (a fresh transition_id
per bulk_set_state request), `abandon` leaves them alone. A parent that keeps running changes nothing."""

import time
import uuid

import pytest

from harness import DEMO_DEPLOYMENT, wait_until

RUNNING_LONG = {"scheduled_ms": 0, "pending_ms": 0, "running_ms": 60_000}


def _parent(fake) -> str:
    """A parent flow run on the fake, RUNNING, as the flow that posts the batch would be."""
    p = fake.create_run(name="parent-flow", state="RUNNING")
    assert p["state_type"] == "RUNNING"
    return p["id"]


def _children_seen(api, batch_id, n, state_name="Running"):
    """Waits until floodgate has read `n` launched children in `state_name` (so it tracks them,
    and the parent with them)."""
    def seen():
        items = api.all_runs(batch_id, state="LAUNCHED")
        return len(items) == n and all(it["flow_run_state"] == state_name for it in items) and items
    return wait_until(seen, 15, 0.1, what=f"{n} children seen {state_name} by floodgate")


def _filters_after(fake, n_more):
    """Waits until the fake has answered `n_more` further tracking reads: whatever floodgate
    queued before (a cancel, say) has been sent by then."""
    start = fake.stats()["requests"].get("flow_runs_filter", 0)
    wait_until(lambda: fake.stats()["requests"].get("flow_runs_filter", 0) >= start + n_more, 30,
               0.1, what=f"{n_more} more tracking reads")


@pytest.mark.parametrize("parent_final", ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"])
def test_parent_ending_cancels_running_children(api, fake, parent_final):
    fake.config(run_schedule=RUNNING_LONG, cancel_delay_ms=60_000)  # CANCELLING stays visible
    parent = _parent(fake)
    total, cap = 6, 4
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "parent_flow_run_id": parent,
                    "on_cancel": "cancel_children", "limits": {"max_running": cap},
                    "runs": [{"parameters": {"i": i}} for i in range(total)]})
    launched = _children_seen(api, b["id"], cap)
    children = {it["flow_run_id"] for it in launched}
    assert api.batch(b["id"])["state"] == "RUNNING"
    assert fake.set_states() == []

    fake.set_run_state(parent, parent_final)
    final = api.wait_state(b["id"], "CANCELLED", timeout=20)
    c = final["counts"]
    assert sum(c.values()) == total, c
    assert c["SKIPPED"] == total - cap, c  # never launched under an ended parent
    assert c["LAUNCHED"] == cap, c  # CANCELLING is not final yet
    assert final["finished_at"] is not None

    # Each running child (and nothing else) is asked to cancel, once.
    recs = wait_until(lambda: (x := fake.set_states()) and len(x) >= cap and x, 15, 0.1,
                      what=f"{cap} set_state requests")
    assert sorted(r["flow_run_id"] for r in recs) == sorted(children), recs
    for r in recs:
        assert r["type"] == "CANCELLING", r
        assert r["force"] is False, r
        assert r["from_type"] == "RUNNING", r
        assert r["status"] == "ACCEPT", r
        uuid.UUID(r["transition_id"])  # a real UUID
    # A fresh transition id per bulk_set_state request, shared by the runs it names.
    assert len({r["transition_id"] for r in recs}) == \
        fake.stats()["requests"]["bulk_set_state"], recs
    on_fake = {r["id"]: r for r in fake.runs_of(b["id"])}
    assert set(on_fake) == children, "runs were launched after the parent ended"
    tid_of = {r["flow_run_id"]: r["transition_id"] for r in recs}
    for cid in children:
        run = on_fake[cid]
        assert run["state_type"] == "CANCELLING", run
        assert run["state"]["state_details"]["transition_id"] == tid_of[cid], run
    parent_run = next(r for r in fake.runs() if r["id"] == parent)
    assert parent_run["state_type"] == parent_final  # floodgate never touches the parent

    # Once the workers have stopped them, floodgate follows the children to CANCELLED.
    fake.advance_clock(61_000)
    done = api.wait_state(b["id"], "CANCELLED", timeout=30,
                          predicate=lambda x: x["counts"]["CANCELLED"] == cap)
    assert done["counts"]["LAUNCHED"] == 0 and done["counts"]["SKIPPED"] == total - cap, done
    for it in api.all_runs(b["id"], state="CANCELLED"):
        assert it["flow_run_state"] == "Cancelled", it
    assert len(fake.set_states()) == cap


def test_parent_ending_with_abandon_leaves_children_alone(api, fake):
    fake.config(run_schedule={"scheduled_ms": 0, "pending_ms": 0, "running_ms": 4000})
    parent = _parent(fake)
    total = 5
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "parent_flow_run_id": parent,
                    "on_cancel": "abandon", "runs": [{"parameters": {"i": i}} for i in range(total)]})
    launched = _children_seen(api, b["id"], total)
    fake.set_run_state(parent, "COMPLETED")
    # The batch is cancelled at once (abandon: children left alone) ...
    cancelled = api.wait_state(b["id"], "CANCELLED", timeout=15)
    assert cancelled["on_cancel"] == "abandon"
    # ... and the children run on to their own end, and floodgate follows them there.
    done = api.wait_state(b["id"], "CANCELLED", timeout=30,
                          predicate=lambda x: x["counts"]["COMPLETED"] == total)
    assert sum(done["counts"].values()) == total
    assert fake.set_states() == [], "a child was asked to change state under abandon"
    runs = fake.runs_of(b["id"])
    assert len(runs) == total
    assert all(r["state_type"] == "COMPLETED" for r in runs), [r["state_type"] for r in runs]
    items = api.all_runs(b["id"])
    assert {it["flow_run_id"] for it in items} == {it["flow_run_id"] for it in launched}
    assert all(it["state"] == "COMPLETED" and it["flow_run_state"] == "Completed" for it in items), items


def test_parent_still_running_cancels_nothing(api, fake):
    fake.config(run_schedule={"scheduled_ms": 0, "pending_ms": 0, "running_ms": 3000})
    parent = _parent(fake)
    total = 5
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "parent_flow_run_id": parent,
                    "on_cancel": "cancel_children",
                    "runs": [{"parameters": {"i": i}} for i in range(total)]})
    _children_seen(api, b["id"], total)
    # Non-final parent states are not an end: paused, then running again.
    fake.set_run_state(parent, "PAUSED")
    _filters_after(fake, 1)
    fake.set_run_state(parent, "RUNNING")
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["COMPLETED"] == total, final
    assert fake.set_states() == []
    assert all(r["state_type"] == "COMPLETED" for r in fake.runs_of(b["id"]))
    parent_run = next(r for r in fake.runs() if r["id"] == parent)
    assert parent_run["state_type"] == "RUNNING"


def test_patched_on_cancel_applies_when_the_parent_ends(api, fake):
    """PATCH on_cancel abandon -> cancel_children on a running batch: the parent watch follows
    the new policy at once."""
    fake.config(run_schedule=RUNNING_LONG, cancel_delay_ms=60_000)
    parent = _parent(fake)
    total = 3
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "parent_flow_run_id": parent,
                    "runs": [{"parameters": {"i": i}} for i in range(total)]})
    assert b["on_cancel"] == "abandon"
    launched = _children_seen(api, b["id"], total)
    r = api.patch(b["id"], {"on_cancel": "cancel_children"})
    assert r.status == 200 and r.json["on_cancel"] == "cancel_children", r
    fake.set_run_state(parent, "FAILED")
    final = api.wait_state(b["id"], "CANCELLED", timeout=20)
    assert final["on_cancel"] == "cancel_children"
    recs = wait_until(lambda: len(x := fake.set_states()) >= total and x, 15, 0.1,
                      what="a cancel per child")
    assert sorted(x["flow_run_id"] for x in recs) == sorted(it["flow_run_id"] for it in launched)
    assert all(x["type"] == "CANCELLING" and x["status"] == "ACCEPT" for x in recs), recs


def test_parent_that_ended_while_floodgate_was_down(fg, fake):
    """The watch survives a restart: the parent ends while floodgated is killed; after the
    restart the batch is cancelled and its running children moved to CANCELLING."""
    fake.config(run_schedule=RUNNING_LONG, cancel_delay_ms=60_000)
    parent = _parent(fake)
    total, cap = 5, 2
    b = fg.client.submit({"deployment": DEMO_DEPLOYMENT, "parent_flow_run_id": parent,
                          "on_cancel": "cancel_children", "limits": {"max_running": cap},
                          "runs": [{"parameters": {"i": i}} for i in range(total)]})
    launched = _children_seen(fg.client, b["id"], cap)
    time.sleep(0.2)  # the store catches up (50 ms flushes)
    fg.kill()
    fake.set_run_state(parent, "CRASHED")
    fg.start()
    final = fg.client.wait_state(b["id"], "CANCELLED", timeout=20)
    assert final["counts"]["SKIPPED"] == total - cap, final
    recs = wait_until(lambda: len(x := fake.set_states()) >= cap and x, 15, 0.1,
                      what="a cancel per running child")
    assert sorted(x["flow_run_id"] for x in recs) == sorted(it["flow_run_id"] for it in launched)
    assert len(fake.runs_of(b["id"])) == cap


@pytest.mark.parametrize("on_cancel", ["abandon", "cancel_children"])
def test_nothing_is_launched_under_a_parent_that_has_ended(api, fake, on_cancel):
    """Launches spaced by a slow per-batch rate: the parent ends while no child runs (the first
    has finished, the next is not due yet). The watch still sees it: the rest are SKIPPED and
    never created, whatever on_cancel says."""
    fake.config(run_schedule={"scheduled_ms": 0, "pending_ms": 0, "running_ms": 300})
    parent = _parent(fake)
    total = 3
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "parent_flow_run_id": parent,
                    "on_cancel": on_cancel,
                    "limits": {"launches_per_second": 0.01, "burst": 1},
                    "runs": [{"parameters": {"i": i}} for i in range(total)]})
    wait_until(lambda: api.batch(b["id"])["counts"]["COMPLETED"] == 1, 30, 0.1,
               what="the first child completed")
    fake.set_run_state(parent, "COMPLETED")
    # The next launch is due 100 s after the first: no race with a loaded machine.
    final = api.wait_state(b["id"], "CANCELLED", timeout=60)
    c = final["counts"]
    assert c["COMPLETED"] == 1 and c["SKIPPED"] == total - 1, c
    time.sleep(1)
    assert len(fake.runs_of(b["id"])) == 1, "a child was launched under an ended parent"
    assert fake.set_states() == []
