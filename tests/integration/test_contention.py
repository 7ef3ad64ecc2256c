"""A busy Prefect never costs a child (issue 10): database contention, per run in a bulk create
or as whole-request 503s after SQLite's busy timeout, is waited out within max_elapsed_s, never
within max_attempts; it slows floodgate down; and no run that exists in Prefect is reported
LAUNCH_FAILED or SKIPPED."""

import collections
import time

import pytest

from harness import DEMO_DEPLOYMENT, assert_exactly_once, wait_until

# max_attempts 2: a transient answer counting as an attempt would fail the run at once.
STRICT_ATTEMPTS = {"max_attempts": 2, "initial_delay_s": 0.05, "max_delay_s": 0.5,
                   "max_elapsed_s": 600}


def runs_body(total, **extra):
    body = {"deployment": DEMO_DEPLOYMENT, "track": False, "retry": STRICT_ATTEMPTS,
            "runs": [{"parameters": {"i": i}} for i in range(total)]}
    body.update(extra)
    return body


def items_by_state(api, batch_id):
    out = collections.defaultdict(list)
    for it in api.all_runs(batch_id):
        out[it["state"]].append(it)
    return out


@pytest.mark.slow
@pytest.mark.time_limit(240)
def test_bulk_lock_errors_complete_every_child_once_and_slow_down(api, fake):
    """Heavy per-run 'database is locked' in bulk answers: COMPLETED, every child exactly once,
    none LAUNCH_FAILED, and fewer requests per second while the contention lasts."""
    total = 3000
    fake.config(latency_ms=5)
    # 100 launches a second in grants of at most 5: a steady stream of small bulk creates.
    b = api.submit(runs_body(total, limits={"launches_per_second": 100, "burst": 5}))
    wait_until(lambda: fake.stats()["runs"] >= 400, 60, 0.05, what="a clean stretch")
    clean_from = len(fake.timeline())
    wait_until(lambda: fake.stats()["runs"] >= 900, 60, 0.05, what="more clean creates")
    clean_to = len(fake.timeline())
    fake.config(bulk_item_error_rate=0.8)
    contended_from = len(fake.timeline()) + 1
    # Until runs have met the lock more often than max_attempts (2) allows.
    wait_until(lambda: max(it["transient_attempts"] for it in api.all_runs(b["id"])) >= 3, 120,
               1.0, what="a run contended three times")
    contended_to = len(fake.timeline())
    fake.config(bulk_item_error_rate=0)
    final = api.wait_state(b["id"], timeout=100)

    stats = fake.stats()
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["LAUNCHED"] == total
    assert final["counts"]["LAUNCH_FAILED"] == 0
    assert_exactly_once(fake.runs(), b["id"], total)
    # Runs met the lock more often than max_attempts allows, and were launched anyway; the
    # listing says how many attempts were transient and how long each waited.
    items = api.all_runs(b["id"])
    print("attempts/transient:", collections.Counter((it["attempts"], it["transient_attempts"])
                                                     for it in items))
    most = max(items, key=lambda it: it["transient_attempts"])
    assert most["transient_attempts"] >= 3 and most["attempts"] > 2, most
    assert most["waited_s"] > 0, most
    assert all(it["waited_s"] >= 0 and it["last_error"] is None for it in items)

    tl = fake.timeline()
    clean = tl[clean_from:clean_to]
    contended = tl[contended_from:contended_to]
    assert len(clean) >= 2 and len(contended) >= 2, (clean, contended)
    clean_rate = sum(x["requests"] for x in clean) / len(clean)
    contended_rate = sum(x["requests"] for x in contended) / len(contended)
    print(f"timeline clean {clean} contended {contended}")
    print(f"requests/s clean {clean_rate:.1f}, contended {contended_rate:.1f}; "
          f"bulk_item faults {stats['faults']['bulk_item']}")
    assert contended_rate < 0.7 * clean_rate, (clean_rate, contended_rate)


@pytest.mark.time_limit(90)
def test_locked_database_503s_after_busy_timeout_are_waited_out(api, fake):
    """SQLite's single writer with a busy timeout: writes wait, then 503. Single creates and
    bulk creates alike; max_attempts 2 does not bound them."""
    total = 400
    fake.config(write_lock_ms=15, write_lock_wait_ms=40)
    batches = [api.submit(runs_body(total // 4, limits={"launches_per_second": 200, "burst": 1}))
               for _ in range(4)]
    for b in batches:
        final = api.wait_state(b["id"], timeout=80)
        assert final["state"] == "COMPLETED", final
        assert final["counts"]["LAUNCH_FAILED"] == 0
        assert_exactly_once(fake.runs_of(b["id"]), b["id"], total // 4)
    assert fake.stats()["faults"]["locked"] > 0


@pytest.mark.parametrize("bulk", ["true", "false"])
@pytest.mark.time_limit(120)
def test_lost_answers_until_max_elapsed_are_looked_up_not_disowned(start_floodgated, fake, bulk):
    """Every create makes its run and loses the answer: when max_elapsed_s runs out floodgate
    looks each key up and follows the run it finds; none LAUNCH_FAILED."""
    api = start_floodgated("--bulk", bulk).client
    # Every answer lost looks like an outage to the circuit breaker, which then probes at
    # growing intervals: a few runs are enough.
    total = 10
    fake.config(lost_response_rate=1.0, fault_paths=["create_flow_run"])
    b = api.submit(runs_body(total, retry={"max_attempts": 2, "initial_delay_s": 0.05,
                                           "max_delay_s": 0.2, "max_elapsed_s": 1},
                             tolerated_failure_percentage=100))
    final = api.wait_state(b["id"], timeout=100)
    runs = fake.runs()
    assert_exactly_once(runs, b["id"], total)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["LAUNCHED"] == total, final["counts"]
    ids = {r["idempotency_key"]: r["id"] for r in runs}
    for it in api.all_runs(b["id"]):
        assert it["flow_run_id"] == ids[f"floodgate:{b['id']}:{it['index']}"], it
    assert fake.stats()["requests"].get("flow_runs_filter", 0) > 0


@pytest.mark.time_limit(60)
def test_cancel_while_answers_are_lost_skips_only_runs_that_do_not_exist(start_floodgated, fake):
    """A batch cancelled while its creates lose their answers: an item whose run exists is
    followed (LAUNCHED), never SKIPPED; SKIPPED items have no run in Prefect."""
    api = start_floodgated("--bulk", "false").client
    total = 60
    fake.config(lost_response_rate=1.0, fault_paths=["create_flow_run"], latency_ms=20)
    b = api.submit(runs_body(total, retry={"max_attempts": 2, "initial_delay_s": 0.2,
                                           "max_delay_s": 1, "max_elapsed_s": 600},
                             limits={"max_in_flight": 4}))
    wait_until(lambda: fake.stats()["runs"] >= 10, 20, 0.01, what="runs with lost answers")
    r = api.control(b["id"], "cancel", {"on_cancel": "abandon"})
    assert r.status == 200, r
    fake.config(lost_response_rate=0.0)
    wait_until(lambda: not [it for it in api.all_runs(b["id"])
                            if it["state"] in ("PENDING", "LAUNCHING", "RETRY_WAIT")],
               30, 0.05, what="every item decided")
    on_fake = {r["idempotency_key"]: r["id"] for r in fake.runs()}
    states = items_by_state(api, b["id"])
    assert states["SKIPPED"], "nothing was skipped; cancel earlier"
    for it in states["SKIPPED"]:
        assert f"floodgate:{b['id']}:{it['index']}" not in on_fake, it
    by_index = {it["index"]: it for it in api.all_runs(b["id"])}
    for key, run_id in on_fake.items():
        it = by_index[int(key.rsplit(":", 1)[1])]
        assert it["state"] == "LAUNCHED" and it["flow_run_id"] == run_id, it
    assert not states["LAUNCH_FAILED"]
