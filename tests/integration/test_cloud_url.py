"""Prefect Cloud's API root /api/accounts/{a}/workspaces/{w} (issue 17, item 6): every call
floodgated makes keeps the account and workspace in front of its path. The fake serves only that
root (`api_root`), so a call that lost any part of it gets 404 and shows in the stats."""

from harness import DEMO_DEPLOYMENT, wait_until

ROOT = ("/api/accounts/0b7c1f4e-2d3a-4c5b-8e9f-a1b2c3d4e5f6"
        "/workspaces/1c8d2a5f-3e4b-4d6c-9fa0-b2c3d4e5f6a7")


def test_every_call_keeps_the_cloud_prefix(start_floodgated, fake):
    fake.config(api_root=ROOT, csrf_enabled=True, auth="Bearer pnu_key",
                run_schedule={"scheduled_ms": 100, "pending_ms": 100, "running_ms": 100})
    api = start_floodgated(prefect_api_url=fake.base + ROOT,
                           env={"PREFECT_API_KEY": "pnu_key"}).client
    parent = fake.create_run(name="parent-flow", state="RUNNING")["id"]

    # Deployment by name, placeholder task runs, bulk creates, tracking filters.
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "parent_flow_run_id": parent,
                    "runs": [{"parameters": {"i": i}} for i in range(12)]})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED" and final["counts"]["COMPLETED"] == 12, final

    # Cancelling children (bulk_set_state) on a batch whose children run for good.
    fake.config(run_schedule={"scheduled_ms": 0, "pending_ms": 0, "running_ms": 600_000})
    c = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": [{}] * 3})
    wait_until(lambda: api.batch(c["id"])["counts"]["LAUNCHED"] == 3, 15, what="3 launched")
    assert api.control(c["id"], "cancel", {"on_cancel": "cancel_children"}).status == 200
    wait_until(lambda: all(x["state_type"] == "CANCELLED" for x in fake.runs_of(c["id"])), 15,
               what="children cancelled")

    stats = fake.stats()
    used = stats["requests"]
    for label in ("csrf", "read_deployment", "task_runs", "create_flow_run_bulk",
                  "flow_runs_filter", "bulk_set_state"):
        assert used.get(label, 0) > 0, (label, used)
    # Nothing went anywhere but the root: no unknown path, no 404 at all.
    assert used.get("other", 0) == 0, used
    assert "404" not in stats["statuses"], stats["statuses"]
    assert "401" not in stats["statuses"], stats["statuses"]
