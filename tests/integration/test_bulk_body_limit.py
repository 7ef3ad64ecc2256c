"""Bulk creates within a body limit (issue 17): packed by bytes as well as by count, and split
when whatever stands in front of Prefect refuses one as too large (413), never failing the runs
it carried. The fake Prefect plays the proxy with `max_body_bytes`."""

from harness import DEMO_DEPLOYMENT, assert_exactly_once

PAD = "x" * 2000  # about 2 KB of parameters a run


def padded_runs(n, big=()):
    return [{"parameters": {"i": i, "pad": PAD * (10 if i in big else 1)}} for i in range(n)]


def test_bulks_are_packed_by_bytes_within_the_budget(start_floodgated, fake):
    fake.config(max_body_bytes=65536)
    api = start_floodgated("--max-prefect-body-bytes", "65536").client
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": padded_runs(300)})
    final = api.wait_state(b["id"], timeout=60)
    assert final["state"] == "COMPLETED" and final["counts"]["LAUNCHED"] == 300, final
    assert_exactly_once(fake.runs(), b["id"], 300)
    stats = fake.stats()
    # 300 runs of about 2 KB, at most 64 KiB a bulk: ten bulks or more, and never a 413.
    assert stats["statuses"].get("413", 0) == 0, stats["statuses"]
    assert stats["requests"]["create_flow_run_bulk"] >= 10, stats["requests"]
    assert all(it["attempts"] == 1 for it in api.all_runs(b["id"]))


def test_a_413_splits_the_bulk_and_one_oversized_run_fails_alone(start_floodgated, fake):
    fake.config(max_body_bytes=16384)
    fg = start_floodgated()  # the default budget, 4 MiB: the proxy's 16 KiB is learned by 413s
    api = fg.client
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False,
                    "runs": padded_runs(100, big={37}), "tolerated_failure_count": 1})
    final = api.wait_state(b["id"], timeout=60)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["LAUNCHED"] == 99 and final["counts"]["LAUNCH_FAILED"] == 1, final
    items = api.all_runs(b["id"])
    assert "413" in items[37]["last_error"], items[37]
    assert all(it["attempts"] == 1 for it in items), [it for it in items if it["attempts"] != 1][:3]
    runs = [r for r in fake.runs() if r["idempotency_key"].startswith(f"floodgate:{b['id']}:")]
    assert len(runs) == 99 and len({r["idempotency_key"] for r in runs}) == 99
    assert "packing bulks into fewer bytes" in fg.log_path.read_text()
