"""Submitting batches: 201 + Location, what reaches Prefect, Idempotency-Key."""

import collections

from harness import DEMO_DEPLOYMENT, DEMO_DEPLOYMENT_ID, assert_exactly_once


def test_submit_201_location_and_get_returns_same(api):
    body = {"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{"parameters": {"i": i}} for i in range(3)]}
    r = api.request("POST", "/v1/batches", body)
    assert r.status == 201, r
    b = r.json
    assert r.headers["location"] == f"/v1/batches/{b['id']}"
    assert b["total"] == 3
    assert sum(b["counts"].values()) == 3
    assert b["deployment"] == DEMO_DEPLOYMENT
    assert b["track"] is False
    assert b["state"] in {"QUEUED", "RUNNING", "COMPLETED"}
    g = api.request("GET", r.headers["location"])
    assert g.status == 200
    same = g.json
    for k in ("id", "total", "created_at", "deployment", "tags", "limits", "retry", "track",
              "tolerated_failure_percentage", "on_cancel", "priority", "labels"):
        assert same[k] == b[k], k
    assert same["version"] >= b["version"]


def test_track_false_batch_of_50_completes_with_keys_and_tags(api, fake):
    runs = [{"parameters": {"i": i}, "tags": [f"run-{i}"]} for i in range(50)]
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "tags": ["batch-tag", "team:x"],
                    "runs": runs})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED"
    assert final["counts"]["LAUNCHED"] == 50
    assert final["finished_at"] is not None
    fruns = fake.runs()
    assert_exactly_once(fruns, b["id"], 50)
    by_key = {r["idempotency_key"]: r for r in fruns}
    for i in range(50):
        r = by_key[f"floodgate:{b['id']}:{i}"]
        assert r["parameters"] == {"i": i}
        assert r["deployment_id"] == DEMO_DEPLOYMENT_ID
        assert {f"floodgate-batch:{b['id']}", "batch-tag", "team:x", f"run-{i}"} <= set(r["tags"]), r["tags"]
    items = api.all_runs(b["id"])
    assert [it["index"] for it in items] == list(range(50))
    ids = {r["idempotency_key"]: r["id"] for r in fruns}
    for it in items:
        assert it["state"] == "LAUNCHED"
        assert it["flow_run_id"] == ids[f"floodgate:{b['id']}:{it['index']}"]
        assert it["attempts"] >= 1
        assert it["last_error"] is None


def test_run_fields_are_forwarded_to_prefect(api, fake):
    runs = [
        {"parameters": {"x": 1, "nested": {"a": [1, 2]}}, "name": "first-run",
         "work_queue_name": "wq-special", "job_variables": {"env": {"A": "1"}, "image": "img:1"},
         "tags": ["t1"]},
        {"parameters": {"x": 2}, "idempotency_key": "my-own-key-2"},
        {"name": None, "parameters": None},  # null means absent
    ]
    b = api.submit({"deployment_id": DEMO_DEPLOYMENT_ID, "track": False, "runs": runs})
    api.wait_state(b["id"], timeout=30)
    fruns = fake.runs()
    assert len(fruns) == 3
    by_key = {r["idempotency_key"]: r for r in fruns}
    first = by_key[f"floodgate:{b['id']}:0"]
    assert first["name"] == "first-run"
    assert first["work_queue_name"] == "wq-special"
    assert first["job_variables"] == {"env": {"A": "1"}, "image": "img:1"}
    assert first["parameters"] == {"x": 1, "nested": {"a": [1, 2]}}
    assert "t1" in first["tags"] and f"floodgate-batch:{b['id']}" in first["tags"]
    # An item's own idempotency key is used instead of the deterministic one.
    assert "my-own-key-2" in by_key
    assert f"floodgate:{b['id']}:1" not in by_key
    assert by_key["my-own-key-2"]["parameters"] == {"x": 2}
    third = by_key[f"floodgate:{b['id']}:2"]
    assert third["parameters"] == {}
    assert third["work_queue_name"] == "default"
    items = api.all_runs(b["id"])
    assert items[1]["flow_run_id"] == by_key["my-own-key-2"]["id"]


def test_unicode_and_nested_values_survive_the_trip(api, fake):
    params = {"text": "ünïcødé ✓ 日本語 \U0001F680", "quote": "a \"b\" \\ c", "n": None,
              "f": 1.5, "big": 2 ** 53, "neg": -7, "list": [True, False, {"k": []}]}
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "tags": ["ëtag"],
                    "runs": [{"parameters": params, "name": "näme-✓"}]})
    assert api.wait_state(b["id"], timeout=30)["state"] == "COMPLETED"
    (run,) = fake.runs()
    assert run["parameters"] == params
    assert run["name"] == "näme-✓"
    assert "ëtag" in run["tags"]
    assert api.batch(b["id"])["tags"] == ["ëtag"]


def test_per_run_deployment_override(api, fake):
    other = fake.add_deployment(flow_name="other-flow", name="other")
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [
        {"parameters": {"i": 0}}, {"parameters": {"i": 1}, "deployment": "other-flow/other"},
        {"parameters": {"i": 2}, "deployment": DEMO_DEPLOYMENT_ID}]})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    by_key = {r["idempotency_key"]: r for r in fake.runs()}
    assert by_key[f"floodgate:{b['id']}:0"]["deployment_id"] == DEMO_DEPLOYMENT_ID
    assert by_key[f"floodgate:{b['id']}:1"]["deployment_id"] == other["id"]
    assert by_key[f"floodgate:{b['id']}:2"]["deployment_id"] == DEMO_DEPLOYMENT_ID


def test_only_run_deployments_no_batch_deployment(api, fake):
    b = api.submit({"track": False, "runs": [{"deployment": DEMO_DEPLOYMENT}, {"deployment": DEMO_DEPLOYMENT}]})
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED", final
    assert_exactly_once(fake.runs(), b["id"], 2)


def test_idempotency_key_repeat_returns_200_same_batch_nothing_new(api, fake):
    body = {"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{"parameters": {"i": i}} for i in range(10)]}
    first = api.request("POST", "/v1/batches", body, headers={"Idempotency-Key": "submit-42"})
    assert first.status == 201, first
    b = first.json
    assert b["idempotency_key"] == "submit-42"
    api.wait_state(b["id"], timeout=30)
    for attempt in range(2):
        again = api.request("POST", "/v1/batches", body, headers={"Idempotency-Key": "submit-42"})
        assert again.status == 200, again
        assert again.json["id"] == b["id"]
        assert again.headers["location"] == f"/v1/batches/{b['id']}"
        assert again.json["total"] == 10
    # A repeat with a different body still returns the original batch.
    other = dict(body, runs=[{"parameters": {"different": True}}])
    again = api.request("POST", "/v1/batches", other, headers={"Idempotency-Key": "submit-42"})
    assert again.status == 200 and again.json["id"] == b["id"]
    batches = api.all_batches()
    assert [x["id"] for x in batches] == [b["id"]]
    assert_exactly_once(fake.runs(), b["id"], 10)
    # Another key makes another batch.
    third = api.request("POST", "/v1/batches", body, headers={"Idempotency-Key": "submit-43"})
    assert third.status == 201 and third.json["id"] != b["id"]
    assert len(api.all_batches()) == 2


def test_idempotency_key_survives_restart(fg, fake):
    api = fg.client
    body = {"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{}]}
    b = api.submit(body, idempotency_key="k-restart")
    api.wait_state(b["id"], timeout=30)
    fg.restart()  # SIGKILL: the final state may not be flushed yet, the key (201) is
    again = fg.client.request("POST", "/v1/batches", body, headers={"Idempotency-Key": "k-restart"})
    assert again.status == 200, again
    assert again.json["id"] == b["id"]
    # The batch finishes (again, from the store) without a second run on Prefect.
    assert fg.client.wait_state(b["id"], timeout=60)["state"] == "COMPLETED"
    assert len(fake.runs()) == 1


def test_idempotency_key_header_bounds(api):
    body = {"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{}]}
    r = api.request("POST", "/v1/batches", body, headers={"Idempotency-Key": "x" * 256})
    assert r.status == 400, r
    assert r.json["field"] == "Idempotency-Key"
    assert api.all_batches() == []
    r = api.request("POST", "/v1/batches", body, headers={"Idempotency-Key": "x" * 255})
    assert r.status == 201, r


def test_concurrent_submissions_with_same_idempotency_key_create_one_batch(api, fake):
    import concurrent.futures
    body = {"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{"parameters": {"i": i}} for i in range(5)]}

    def post(_):
        r = api.request("POST", "/v1/batches", body, headers={"Idempotency-Key": "race"})
        return r.status, r.json["id"]

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(post, range(8)))
    statuses = collections.Counter(s for s, _ in results)
    assert statuses[201] == 1 and statuses[200] == 7, results
    assert len({i for _, i in results}) == 1
    batch_id = results[0][1]
    api.wait_state(batch_id, timeout=30)
    assert len(api.all_batches()) == 1
    assert_exactly_once(fake.runs(), batch_id, 5)
