"""A batch's runs live in the store: floodgated holds a page or two of those waiting to launch
(2,000 at a time), those in flight and those just done, not the whole batch (issue 16, item 6).
Seen through the floodgate_items_held gauge, and through a cancel whose unlaunched runs, most of
them never held, are SKIPPED in the store's listing as in the counts."""

import time

from harness import DEMO_DEPLOYMENT, parse_metrics, wait_until

PAGE = 2000  # EngineOptions::page_items


def held(fg) -> float:
    return parse_metrics(fg.client.metrics())["floodgate_items_held"]


def test_a_large_batch_holds_a_page_of_its_runs_not_all_of_them(fake, start_floodgated):
    fg = start_floodgated()
    api = fg.client
    n, rate = 20_000, 500
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False,
                    "runs": [{"parameters": {"i": i}} for i in range(n)],
                    "limits": {"launches_per_second": rate, "burst": 1}})
    bid = b["id"]
    most = 0.0
    while api.batch(bid)["counts"]["LAUNCHED"] < 3000:
        most = max(most, held(fg))
        time.sleep(0.25)
    # Under two pages waiting, at most 256 in flight (--max-in-flight), and the launches of the
    # last flushes (50 ms apart at 500/s) written but not yet evicted.
    print(f"[paging] most items held while launching: {most:.0f} of {n}")
    assert 0 < most < 2 * PAGE + 256 + 200, most

    r = api.control(bid, "cancel")
    assert r.status == 200 and r.json["state"] == "CANCELLED", r
    # The creates in flight at the cancel still answer (LAUNCHED); the rest are SKIPPED.
    final = wait_until(lambda: (lambda b: b if b["counts"]["LAUNCHING"] == 0 else None)(
        api.batch(bid)), 10, 0.1, what="no create in flight")
    launched, skipped = final["counts"]["LAUNCHED"], final["counts"]["SKIPPED"]
    assert launched + skipped == n, final["counts"]
    # The runs never paged in are SKIPPED in the store too, with the batch's final write.
    listed = wait_until(lambda: (lambda s: s if len(s) == skipped else None)(
        api.all_runs(bid, state="SKIPPED")), 10, 0.2, what="every skipped run listed")
    assert len({r["index"] for r in listed}) == skipped
    assert len(api.all_runs(bid, state="LAUNCHED")) == launched
    children = fake.runs_of(bid)
    assert len(children) == launched
    assert len({r["idempotency_key"] for r in children}) == launched
    # Once written, nothing of the batch stays in memory.
    wait_until(lambda: held(fg) == 0 or None, 10, 0.5, what="no item held")
