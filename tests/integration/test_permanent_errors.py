"""Permanent errors fail an item at once with Prefect's own message; the failure tolerance
fails the batch early and skips what was not launched."""

import pytest

from harness import DEMO_DEPLOYMENT


def strict_deployment(fake):
    return fake.add_deployment(flow_name="strict-flow", name="strict", required=["x"],
                               properties={"x": {"type": "integer"}},
                               enforce_parameter_schema=True)


def test_unknown_deployment_every_item_launch_failed(api, fake):
    b = api.submit({"deployment": "no-such-flow/no-such-deployment", "track": False,
                    "runs": [{"parameters": {"i": i}} for i in range(20)],
                    "tolerated_failure_percentage": 100})
    final = api.wait_state(b["id"], timeout=30)
    assert final["counts"]["LAUNCH_FAILED"] == 20, final
    assert final["state"] == "COMPLETED", final  # all failures tolerated
    assert final["failures"] == 20
    for item in api.all_runs(b["id"]):
        assert item["state"] == "LAUNCH_FAILED"
        assert "Deployment not found" in item["last_error"], item
        assert item["flow_run_id"] is None
    assert fake.stats()["runs"] == 0
    # Permanent: resolved once, never retried.
    assert fake.stats()["requests"].get("read_deployment", 0) == 1


def test_unknown_deployment_id_every_item_launch_failed(api, fake):
    b = api.submit({"deployment_id": "11111111-2222-4333-8444-555555555555", "track": False,
                    "runs": [{}] * 3, "tolerated_failure_count": 3})
    final = api.wait_state(b["id"], timeout=30)
    assert final["counts"]["LAUNCH_FAILED"] == 3 and final["state"] == "COMPLETED", final
    assert all("Deployment not found" in x["last_error"] for x in api.all_runs(b["id"]))


@pytest.mark.parametrize("bulk", ["true", "false"])
def test_missing_required_parameter_is_launch_failed_with_prefects_message(start_floodgated, fake, bulk):
    api = start_floodgated("--bulk", bulk).client
    strict_deployment(fake)
    runs = [{"parameters": {"x": i}} for i in range(10)]
    for i in (2, 5, 9):
        runs[i] = {"parameters": {"y": i}}
    b = api.submit({"deployment": "strict-flow/strict", "track": False, "runs": runs,
                    "tolerated_failure_percentage": 100})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["LAUNCH_FAILED"] == 3 and final["counts"]["LAUNCHED"] == 7, final
    items = api.all_runs(b["id"])
    for i in (2, 5, 9):
        it = items[i]
        assert it["state"] == "LAUNCH_FAILED"
        assert "Validation failed for field 'x'" in it["last_error"], it
        assert "'x' is a required property" in it["last_error"], it
        if bulk == "false":
            assert "Error creating flow run" in it["last_error"], it  # the 409's own detail
        assert it["attempts"] == 1, it  # permanent: not retried
    assert len(fake.runs()) == 7
    assert fake.stats()["statuses"].get("503", 0) == 0


def test_parameter_of_wrong_type_is_launch_failed(start_floodgated, fake):
    api = start_floodgated("--bulk", "false").client
    strict_deployment(fake)
    b = api.submit({"deployment": "strict-flow/strict", "track": False,
                    "runs": [{"parameters": {"x": "not-an-int"}}], "tolerated_failure_count": 1})
    final = api.wait_state(b["id"], timeout=30)
    assert final["counts"]["LAUNCH_FAILED"] == 1, final
    err = api.all_runs(b["id"])[0]["last_error"]
    assert "is not of type 'integer'" in err, err


def test_default_tolerance_fails_batch_early_and_skips_the_rest(start_floodgated, fake):
    """Single creates, one at a time: the first 409 fails the batch and nothing else is sent."""
    api = start_floodgated("--bulk", "false").client
    strict_deployment(fake)
    total = 50
    b = api.submit({"deployment": "strict-flow/strict", "track": False,
                    "runs": [{"parameters": {}}] * total, "limits": {"max_in_flight": 1}})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "FAILED", final
    assert final["tolerated_failures"] == 0
    c = final["counts"]
    assert c["LAUNCH_FAILED"] == 1, c
    assert c["SKIPPED"] == total - 1, c
    assert fake.stats()["requests"].get("create_flow_run", 0) == 1
    skipped = api.all_runs(b["id"], state="SKIPPED")
    assert len(skipped) == total - 1
    assert all(s["flow_run_id"] is None for s in skipped)


def test_default_tolerance_with_bulk_skips_unsent_items(api, fake):
    strict_deployment(fake)
    total = 300
    b = api.submit({"deployment": "strict-flow/strict", "track": False,
                    "runs": [{"parameters": {}}] * total, "limits": {"max_in_flight": 1}})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "FAILED", final
    c = final["counts"]
    # The first bulk request (up to 100 items) was sent and failed; the rest never were.
    assert 1 <= c["LAUNCH_FAILED"] <= 100, c
    assert c["SKIPPED"] == total - c["LAUNCH_FAILED"], c
    assert fake.stats()["requests"].get("create_flow_run_bulk", 0) == 1


def test_tolerated_failure_count_fails_batch_when_exceeded(start_floodgated, fake):
    api = start_floodgated("--bulk", "false").client
    strict_deployment(fake)
    runs = [{"parameters": {"x": i}} for i in range(30)]
    for i in (1, 2, 3):
        runs[i] = {"parameters": {}}
    # Two failures tolerated; the third fails the batch.
    b = api.submit({"deployment": "strict-flow/strict", "track": False, "runs": runs,
                    "tolerated_failure_count": 2, "limits": {"max_in_flight": 1}})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "FAILED", final
    assert final["tolerated_failures"] == 2
    assert final["counts"]["LAUNCH_FAILED"] == 3, final
    assert final["counts"]["SKIPPED"] == 30 - 3 - final["counts"]["LAUNCHED"], final
    assert final["counts"]["LAUNCHED"] == 1  # index 0 launched before the failures
    # Within tolerance: the batch completes.
    b2 = api.submit({"deployment": "strict-flow/strict", "track": False, "runs": runs,
                     "tolerated_failure_count": 3})
    final2 = api.wait_state(b2["id"], timeout=30)
    assert final2["state"] == "COMPLETED", final2
    assert final2["counts"]["LAUNCH_FAILED"] == 3 and final2["counts"]["LAUNCHED"] == 27


def test_unknown_deployment_with_default_tolerance_skips_the_rest(api, fake):
    """The deployment cannot be resolved: the first failure fails the batch (tolerance 0) and
    the other items, never sent, end SKIPPED (not LAUNCH_FAILED) — and no item changes state
    after the batch is final."""
    total = 10
    b = api.submit({"deployment": "no-such-flow/nope", "track": False, "runs": [{}] * total})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "FAILED", final
    settled = api.batch(b["id"], wait_s=0.5, after_version=final["version"])
    assert settled["version"] == final["version"], (
        f"the batch changed after it became FAILED: {final['counts']} -> {settled['counts']}")
    c = settled["counts"]
    assert c["LAUNCH_FAILED"] == 1 and c["SKIPPED"] == total - 1, c
