"""Per-run errors of the bulk create, one test per class (issue 17, item 5), with the texts
Prefect's server really sends (fake Prefect: `no_work_pool`, `bulk_item_error`; classes in
service/prefect/bulk_errors.h)."""

from harness import DEMO_DEPLOYMENT, wait_until

# max_attempts 2: a run retried as transient must not be failed by its attempt count.
FAST_RETRY = {"max_attempts": 2, "initial_delay_s": 0.05, "max_delay_s": 0.2,
              "max_elapsed_s": 600}

PG_DEADLOCK = ("(sqlalchemy.dialects.postgresql.asyncpg.Error) <class "
               "'asyncpg.exceptions.DeadlockDetectedError'>: deadlock detected\n"
               "[SQL: INSERT INTO flow_run ...]\n"
               "(Background on this error at: https://sqlalche.me/e/20/dbapi)")


def test_prefects_verdict_on_a_run_fails_it_at_once(api, fake):
    fake.add_deployment(flow_name="served", name="d", no_work_pool=True)
    runs = [{"parameters": {"i": i}} for i in range(6)]
    for i in (1, 4):
        runs[i]["work_queue_name"] = "gpu"
    b = api.submit({"deployment": "served/d", "track": False, "runs": runs, "retry": FAST_RETRY,
                    "tolerated_failure_percentage": 100})
    final = api.wait_state(b["id"], timeout=30)
    assert final["counts"]["LAUNCH_FAILED"] == 2 and final["counts"]["LAUNCHED"] == 4, final
    items = api.all_runs(b["id"])
    for i in (1, 4):
        assert items[i]["attempts"] == 1, items[i]  # a verdict: never retried
        assert "Cannot create flow run in work queue gpu" in items[i]["last_error"], items[i]
    assert fake.stats()["requests"].get("create_flow_run", 0) == 0  # all through the bulk


def test_database_contention_is_retried_until_it_passes(start_floodgated, fake):
    fg = start_floodgated()
    api = fg.client
    fake.config(bulk_item_error_rate=1, bulk_item_error=PG_DEADLOCK)
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "retry": FAST_RETRY,
                    "runs": [{"parameters": {"i": i}} for i in range(5)]})
    # Far more tries than max_attempts: contention is not counted against it.
    wait_until(lambda: fake.stats()["faults"]["bulk_item"] >= 20, 30, what="contended tries")
    assert api.batch(b["id"])["counts"]["LAUNCH_FAILED"] == 0
    fake.config(bulk_item_error_rate=0)
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED" and final["counts"]["LAUNCHED"] == 5, final
    assert len(fake.runs_of(b["id"])) == 5
    assert "does not know" not in fg.log_path.read_text()  # recognised, not an unknown error


def test_an_unknown_error_is_retried_and_logged_once(start_floodgated, fake):
    fg = start_floodgated()
    api = fg.client
    fake.config(bulk_item_error_rate=1, bulk_item_error="KeyError: 'something new'")
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "retry": FAST_RETRY,
                    "runs": [{"parameters": {"i": i}} for i in range(3)]})
    wait_until(lambda: fake.stats()["faults"]["bulk_item"] >= 12, 30, what="unknown errors")
    assert api.batch(b["id"])["counts"]["LAUNCH_FAILED"] == 0
    fake.config(bulk_item_error_rate=0)
    final = api.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED" and final["counts"]["LAUNCHED"] == 3, final
    log = fg.log_path.read_text()
    assert log.count("Prefect gave an error floodgate does not know") == 1, log[-2000:]
