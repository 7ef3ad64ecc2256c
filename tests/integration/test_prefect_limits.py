"""Limits toward Prefect: answers floodgate cannot read. A 2xx whose body is garbage (the run was
made all the same) must not turn into LAUNCH_FAILED: the item is retried with its key, which
returns the run. An answer larger than --max-prefect-response-bytes is a transient error, never
buffered whole. The fake is told through its environment (tests/fake_prefect/answers.go)."""

from __future__ import annotations

import os

import pytest

from harness import DEMO_DEPLOYMENT, FakePrefect, assert_exactly_once, parse_metrics, wait_until


@pytest.fixture
def fake_with_env(fake_prefect_bin, tmp_path, monkeypatch, request):
    """Factory: a fake Prefect started with extra environment variables."""
    started = []

    def start(**env: str) -> FakePrefect:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        f = FakePrefect(fake_prefect_bin, tmp_path / f"fake{len(started)}.log")
        started.append(f)
        for k in env:
            monkeypatch.delenv(k)
        return f

    yield start
    for f in started:
        f.stop()


def start_against(start_floodgated, fake, *args):
    return start_floodgated(*args, prefect_api_url=fake.api_url)


@pytest.mark.parametrize("bulk", ["false", "true"])
@pytest.mark.time_limit(90)
def test_garbled_2xx_answers_do_not_fail_runs_that_exist(start_floodgated, fake_with_env, bulk):
    total = 40
    # Single creates: half the answers garbled, at random (40 items make an item with two in a
    # row all but certain). Bulk: few requests, so the first three answers are garbled.
    fake = (fake_with_env(FAKE_GARBLE_2XX_RATE="0.5") if bulk == "false"
            else fake_with_env(FAKE_GARBLE_2XX_FIRST="3"))
    fg = start_against(start_floodgated, fake, "--bulk", bulk)
    # Two attempts only: before the fix an item whose two answers were garbled (about one in
    # four) ended LAUNCH_FAILED with no flow_run_id although its run existed.
    b = fg.client.submit({"deployment": DEMO_DEPLOYMENT, "track": False,
                          "retry": {"max_attempts": 2, "initial_delay_s": 0.01,
                                    "max_delay_s": 0.05},
                          "runs": [{"parameters": {"i": i}} for i in range(total)]})
    final = fg.client.wait_state(b["id"], timeout=80)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["LAUNCHED"] == total, final["counts"]
    runs = fake.runs()
    assert_exactly_once(runs, b["id"], total)
    ids = {r["idempotency_key"]: r["id"] for r in runs}
    items = fg.client.all_runs(b["id"])
    for it in items:
        assert it["flow_run_id"] == ids[f"floodgate:{b['id']}:{it['index']}"], it
    # The garbling really happened: some items needed more than the two attempts allowed.
    assert max(it["attempts"] for it in items) > 2, [it["attempts"] for it in items]


@pytest.mark.time_limit(60)
def test_answer_larger_than_the_limit_is_a_transient_error(start_floodgated, fake_with_env):
    fake = fake_with_env(FAKE_PAD_2XX_BYTES=str(512 * 1024))
    fg = start_against(start_floodgated, fake, "--bulk", "false",
                       "--max-prefect-response-bytes", "65536")
    b = fg.client.submit({"deployment": DEMO_DEPLOYMENT, "track": False,
                          "retry": {"max_attempts": 3, "initial_delay_s": 0.01,
                                    "max_delay_s": 0.05},
                          "runs": [{"parameters": {"i": 0}}]})

    # The create's answer is lost to the limit, so its run may exist: its key is looked up
    # (a small answer) before it goes again, and the run it did make is followed.
    # (Not PENDING either: the item is PENDING before its first launch, and between the lookup
    # and its next try.)
    it = wait_until(lambda: next((r for r in fg.client.all_runs(b["id"])
                                  if r["state"] not in ("PENDING", "RETRY_WAIT", "LAUNCHING")),
                                 None), 40, 0.1, what="the item past its retry")
    assert it["state"] == "LAUNCHED", it  # not LAUNCH_FAILED: a transient error
    assert it["attempts"] == 1 and it["transient_attempts"] == 1, it
    assert it["flow_run_id"] == fake.runs()[0]["id"], it
    m = parse_metrics(fg.client.metrics())
    assert m['floodgate_prefect_requests_total{endpoint="create_flow_run",status_class="error"}'] == 1
    assert m['floodgate_prefect_requests_total{endpoint="filter_flow_runs",status_class="2xx"}'] == 1
    assert len(fake.runs()) == 1  # created once
