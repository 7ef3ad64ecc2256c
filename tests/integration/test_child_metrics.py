"""Metrics of issue 4, item 9: `floodgate_children{state}` (launched children not yet final, by
Prefect state name) and the per-batch progress gauges `floodgate_batch_progress_ratio` and
`floodgate_batch_remaining_items` (`batch_id` label, at most 50 active batches, removed when the
batch ends)."""

import re

import pytest

from harness import DEMO_DEPLOYMENT, wait_until

PROGRESS = "floodgate_batch_progress_ratio"
REMAINING = "floodgate_batch_remaining_items"
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> dict[tuple, float]:
    """The samples of metric `name`: {((label, value), ...) sorted: value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparsable metrics line: {line!r}"
        if m.group(1) != name:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        assert labels not in out, f"duplicate series {name}{labels}"
        out[labels] = float(m.group(3))
    return out


def by_label(text: str, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for k, v in samples(text, name).items()}


def test_children_and_progress_gauges_follow_a_running_batch(api, fake):
    # 3 children end at once, 5 stay RUNNING, 2 stay SCHEDULED.
    fake.config(run_schedule={"scheduled_ms": 0, "pending_ms": 0, "running_ms": 60_000})
    runs = ([{"parameters": {"i": i, "__fake_running_ms": 0}} for i in range(3)]
            + [{"parameters": {"i": i}} for i in range(3, 8)]
            + [{"parameters": {"i": i, "__fake_scheduled_ms": 120_000}} for i in range(8, 10)])
    total = len(runs)
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": runs})
    bid = b["id"]

    def settled():
        batch = api.batch(bid)
        if batch["counts"]["COMPLETED"] != 3 or batch["counts"]["LAUNCHED"] != 7:
            return None
        text = api.metrics()
        kids = by_label(text, "floodgate_children", "state")
        if kids.get("Running") != 5 or kids.get("Scheduled") != 2:
            return None
        return batch, text

    batch, text = wait_until(settled, 20, 0.2, what="gauges of the running batch")
    assert batch["state"] == "RUNNING"
    kids = by_label(text, "floodgate_children", "state")
    assert all(v >= 0 for v in kids.values()), kids
    # Children not yet final, by Prefect state name: they add up to the LAUNCHED items.
    assert sum(kids.values()) == batch["counts"]["LAUNCHED"] == 7, kids
    assert kids.get("Completed", 0) == 0, kids  # final children are not "children running"
    progress = by_label(text, PROGRESS, "batch_id")
    remaining = by_label(text, REMAINING, "batch_id")
    assert set(progress) == set(remaining) == {bid}, (progress, remaining)
    assert progress[bid] == pytest.approx(3 / total)
    assert remaining[bid] == 7
    items = by_label(text, "floodgate_items", "state")
    assert sum(items.values()) == total, items
    assert items["LAUNCHED"] == 7 and items["COMPLETED"] == 3, items
    for state, n in batch["counts"].items():
        assert items.get(state, 0) == n, (state, items, batch["counts"])
    batches = by_label(text, "floodgate_batches", "state")
    assert batches["RUNNING"] == 1 and sum(batches.values()) == 1, batches

    # The children end: the batch's series go, and no child is counted any more.
    fake.advance_clock(180_000)
    final = api.wait_state(bid, timeout=30)
    assert final["state"] == "COMPLETED", final

    def gone():
        t = api.metrics()
        ok = (not by_label(t, PROGRESS, "batch_id") and not by_label(t, REMAINING, "batch_id")
              and sum(by_label(t, "floodgate_children", "state").values()) == 0)
        return ok and t

    text = wait_until(gone, 5, 0.1, what="the ended batch's series to leave /metrics")
    assert bid not in text, "the ended batch's id is still on /metrics"
    items = by_label(text, "floodgate_items", "state")
    assert items["COMPLETED"] == total and sum(items.values()) == total, items


def test_progress_ratio_moves_and_remaining_counts_down(api, fake):
    """Every read while the batch runs: ratio = done/total, remaining = total - done, where done
    is the batch's final items; both only move forward."""
    fake.config(run_schedule={"scheduled_ms": 0, "pending_ms": 0, "running_ms": 60_000})
    total = 8
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "tolerated_failure_percentage": 100,
                    "runs": [{"parameters": {"i": i}} for i in range(total)]})
    bid = b["id"]
    wait_until(lambda: api.batch(bid)["counts"]["LAUNCHED"] == total, 10, what="all launched")
    wait_until(lambda: by_label(api.metrics(), REMAINING, "batch_id").get(bid) == total, 5, 0.1,
               what="remaining = total")
    runs = sorted(fake.runs_of(bid), key=lambda r: r["parameters"]["i"])
    # Two rounds of endings; every final state counts as done.
    rounds = [[("COMPLETED", runs[0]), ("FAILED", runs[1]), ("CRASHED", runs[2])],
              [("CANCELLED", runs[3]), ("COMPLETED", runs[4])]]
    done, last_ratio = 0, 0.0
    for ends in rounds:
        for end, run in ends:
            fake.set_run_state(run["id"], end)
        done += len(ends)

        def caught_up():
            t = api.metrics()
            rem = by_label(t, REMAINING, "batch_id").get(bid)
            return rem == total - done and t

        text = wait_until(caught_up, 20, 0.1, what=f"remaining {total - done}")
        ratio = by_label(text, PROGRESS, "batch_id")[bid]
        assert ratio == pytest.approx(done / total), (done, ratio)
        assert ratio > last_ratio
        last_ratio = ratio
        kids = by_label(text, "floodgate_children", "state")
        assert kids.get("Running") == total - done, kids
    assert api.batch(bid)["state"] == "RUNNING"
    api.control(bid, "cancel")
    wait_until(lambda: bid not in api.metrics(), 5, 0.1, what="series removed after cancel")


@pytest.mark.time_limit(90)
def test_progress_series_bounded_to_50_batches_and_removed_when_done(api, fake):
    fake.config(run_schedule={"scheduled_ms": 0, "pending_ms": 0, "running_ms": 600_000})
    ids = [api.submit({"deployment": DEMO_DEPLOYMENT, "runs": [{"parameters": {"n": n}}]})["id"]
           for n in range(55)]

    def series():
        t = api.metrics()
        p, r = by_label(t, PROGRESS, "batch_id"), by_label(t, REMAINING, "batch_id")
        assert set(p) == set(r), (sorted(p), sorted(r))
        return p, r

    wait_until(lambda: len(series()[0]) == 50, 10, 0.1, what="50 progress series")
    p, r = series()
    assert set(p) <= set(ids), set(p) - set(ids)
    assert all(v == 0 for v in p.values()) and all(v == 1 for v in r.values()), (p, r)
    wait_until(lambda: api.batch(ids[-1])["counts"]["LAUNCHED"] == 1, 10, what="all launched")
    assert len(series()[0]) == 50, "more than 50 batches got series"

    # End 10 batches that have series: theirs go, and the 5 left out get one (45 active).
    ended = sorted(p)[:10]
    for bid in ended:
        assert api.control(bid, "cancel").status == 200
    active = set(ids) - set(ended)

    def settled():
        p, _ = series()
        return set(p) == active and p

    wait_until(settled, 5, 0.1, what="series of exactly the 45 active batches")
    text = api.metrics()
    for bid in ended:
        assert bid not in text, f"ended batch {bid} still on /metrics"
    # Everything ends: no series left.
    for bid in active:
        assert api.control(bid, "cancel").status == 200
    wait_until(lambda: not series()[0], 5, 0.1, what="no progress series")
    assert len(series()[1]) == 0


def test_children_state_label_set_is_bounded(api, fake):
    """Custom Prefect state names become `state` labels, at most 64 of them; each exported
    series still counts exactly the children in that state."""
    total = 70
    # The fake's children wait SCHEDULED until the test moves them: no backlog gating, so all
    # 70 are created at once.
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": [{"parameters": {"i": i}} for i in range(total)],
                    "limits": {"max_backlog": 0}})
    bid = b["id"]
    wait_until(lambda: api.batch(bid)["counts"]["LAUNCHED"] == total, 10, what="all launched")
    for run in fake.runs_of(bid):
        fake.set_run_state(run["id"], "RUNNING", name=f"Step-{run['parameters']['i']:02d}")
    wait_until(lambda: all((it["flow_run_state"] or "").startswith("Step-") for it in api.all_runs(bid)),
               30, 0.2, what="floodgate to read the custom state names")

    def exported():
        kids = by_label(api.metrics(), "floodgate_children", "state")
        steps = {k: v for k, v in kids.items() if k.startswith("Step-") and v > 0}
        return len(steps) >= 50 and kids
    kids = wait_until(exported, 5, 0.1, what="the gauges to catch up")
    assert len(kids) <= 64, f"{len(kids)} state labels on floodgate_children"
    for name, v in kids.items():
        want = 1 if name.startswith("Step-") else 0
        assert v == want, (name, v)
    api.control(bid, "cancel")
