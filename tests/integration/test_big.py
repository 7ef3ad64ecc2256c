"""A 100,000-run batch in one request."""

import json
import time

import pytest

from harness import DEMO_DEPLOYMENT, assert_exactly_once


@pytest.mark.slow
@pytest.mark.time_limit(240)
def test_100k_runs_in_one_request(api, fake):
    total = 100_000
    body = {"deployment": DEMO_DEPLOYMENT, "track": False,
            "runs": [{"parameters": {"i": i}} for i in range(total)]}
    data = json.dumps(body).encode()
    t0 = time.monotonic()
    r = api.request("POST", "/v1/batches", data=data, headers={"Content-Type": "application/json"},
                    timeout=120)
    accepted = time.monotonic() - t0
    assert r.status == 201, r
    b = r.json
    assert b["total"] == total
    assert sum(b["counts"].values()) == total
    final = api.wait_state(b["id"], timeout=180)
    took = time.monotonic() - t0
    print(f"100k batch: body {len(data) / 1e6:.1f} MB accepted in {accepted:.2f}s, "
          f"{final['state']} after {took:.1f}s")
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["LAUNCHED"] == total
    stats = fake.stats()
    assert stats["runs"] == total and stats["created"] == total, stats
    assert stats["runs_without_key"] == 0
    t1 = time.monotonic()
    assert_exactly_once(fake.runs(), b["id"], total)
    print(f"checked 100k runs on the fake in {time.monotonic() - t1:.1f}s")
    # The API still pages through all of it.
    last = api.runs_page(b["id"], limit=1000, after=str(total - 1001)).json
    assert [x["index"] for x in last["runs"]] == list(range(total - 1000, total))
    if last["next"] is not None:  # a cursor on a full last page may lead to an empty page
        assert last["next"] == str(total - 1)
        assert api.runs_page(b["id"], limit=1000, after=last["next"]).json == {"runs": [], "next": None}
    assert api.runs_page(b["id"], state="LAUNCHED", limit=1000).json["runs"][0]["index"] == 0
