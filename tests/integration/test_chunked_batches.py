"""Large batches in chunks: POST /v1/batches/{id}/runs appends runs to a batch created with
"sealed": false, idempotent per chunk (Idempotency-Key); POST /v1/batches/{id}/seal lets it
finish. Children are counted on the fake's side."""

import threading
import time

from harness import DEMO_DEPLOYMENT, assert_exactly_once, wait_until


def runs(start, n):
    return [{"parameters": {"i": i}} for i in range(start, start + n)]


def create_unsealed(api, n, **extra):
    body = {"deployment": DEMO_DEPLOYMENT, "track": False, "sealed": False, "runs": runs(0, n)}
    body.update(extra)
    b = api.submit(body)
    assert b["sealed"] is False and b["total"] == n
    return b


def append(api, batch_id, chunk, key=None, expect=201):
    headers = {"Idempotency-Key": key} if key is not None else None
    r = api.request("POST", f"/v1/batches/{batch_id}/runs", {"runs": chunk}, headers=headers)
    assert r.status == expect, r
    return r.json


def launched(api, batch_id):
    return api.batch(batch_id)["counts"]["LAUNCHED"]


def check_children(fake, batch_id, total):
    children = fake.runs_of(batch_id)
    assert_exactly_once(children, batch_id, total)
    for r in children:
        assert r["parameters"] == {"i": int(r["idempotency_key"].rsplit(":", 1)[1])}


def test_chunks_are_appended_once_and_the_sealed_batch_completes(api, fake):
    b = create_unsealed(api, 4)
    first = append(api, b["id"], runs(4, 5), key="chunk-1")
    assert (first["batch_id"], first["first_index"], first["count"], first["total"]) == \
        (b["id"], 4, 5, 9)
    assert first["version"] > b["version"]
    # The answer to chunk 1 was "lost": sent again, it appends nothing and answers as before.
    again = append(api, b["id"], runs(4, 5), key="chunk-1", expect=200)
    assert (again["first_index"], again["count"], again["total"]) == (4, 5, 9)
    second = append(api, b["id"], runs(9, 3), key="chunk-2")
    assert (second["first_index"], second["count"], second["total"]) == (9, 3, 12)
    third = append(api, b["id"], runs(12, 2))  # without a key
    assert (third["first_index"], third["total"]) == (12, 14)
    # The key of chunk 1 with other runs is refused, and appends nothing.
    reused = append(api, b["id"], runs(100, 2), key="chunk-1", expect=422)
    assert "Idempotency-Key" in reused["detail"], reused

    # Every run so far is launched, but the batch is not sealed: it waits for more.
    wait_until(lambda: launched(api, b["id"]) == 14, 20, what="14 children launched")
    view = api.batch(b["id"])
    assert view["state"] == "RUNNING" and view["sealed"] is False and view["total"] == 14

    r = api.control(b["id"], "seal")
    assert r.status == 200, r
    assert r.json["sealed"] is True
    final = api.wait_state(b["id"], timeout=20)
    assert final["state"] == "COMPLETED" and final["total"] == 14, final
    assert api.control(b["id"], "seal").status == 200  # sealing again changes nothing
    check_children(fake, b["id"], 14)
    assert [r["index"] for r in api.all_runs(b["id"])] == list(range(14))


def test_appends_are_refused_to_sealed_ended_and_unknown_batches(api):
    sealed = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": runs(0, 2)})
    assert sealed["sealed"] is True
    refused = append(api, sealed["id"], runs(2, 1), key="k", expect=409)
    assert "sealed" in refused["detail"], refused

    ended = create_unsealed(api, 2)
    assert api.control(ended["id"], "cancel").status == 200
    refused = append(api, ended["id"], runs(2, 1), expect=409)
    assert "CANCELLED" in refused["detail"], refused

    assert append(api, "00000000-0000-4000-8000-000000000000", runs(0, 1), expect=404)
    assert api.control("00000000-0000-4000-8000-000000000000", "seal").status == 404

    open_batch = create_unsealed(api, 1)
    assert append(api, open_batch["id"], [], expect=422)["detail"].startswith("runs")
    r = api.request("POST", f"/v1/batches/{open_batch['id']}/runs", {"runs": runs(0, 1), "x": 1})
    assert r.status == 422, r
    r = api.request("POST", f"/v1/batches/{open_batch['id']}/runs", data=b"{not json",
                    headers={"Content-Type": "application/json"})
    assert r.status == 400, r
    r = api.request("POST", f"/v1/batches/{open_batch['id']}/runs", {"runs": [{"bogus": 1}]})
    assert r.status == 422, r
    assert api.batch(open_batch["id"])["total"] == 1
    r = api.request("DELETE", f"/v1/batches/{open_batch['id']}/seal")
    assert r.status == 405 and r.headers.get("allow") == "POST", r
    # Unsealed, it may start empty; sealed, it may not.
    empty = api.submit({"deployment": DEMO_DEPLOYMENT, "sealed": False, "runs": []})
    assert empty["total"] == 0 and empty["state"] == "QUEUED"
    api.submit({"deployment": DEMO_DEPLOYMENT, "runs": []}, expect=422)


def test_kill_between_chunks_keeps_the_appended_runs_and_launches_them_once(fg, fake):
    api = fg.client
    fake.config(latency_ms=150)  # some creates are in flight at the kill
    b = create_unsealed(api, 3)
    append(api, b["id"], runs(3, 20), key="c1")
    fg.kill()
    fg.start()
    api = fg.client
    view = api.batch(b["id"])
    assert view["total"] == 23 and view["sealed"] is False, view
    # The chunk sent again after the restart (its answer was lost) appends nothing.
    assert append(api, b["id"], runs(3, 20), key="c1", expect=200)["first_index"] == 3
    nxt = append(api, b["id"], runs(23, 4), key="c2")
    assert (nxt["first_index"], nxt["total"]) == (23, 27)
    fake.config(latency_ms=0)
    wait_until(lambda: launched(api, b["id"]) == 27, 30, what="27 children launched")
    assert api.batch(b["id"])["state"] == "RUNNING"
    # A seal survives a kill too.
    assert api.control(b["id"], "seal").status == 200
    fg.kill()
    fg.start()
    final = fg.client.wait_state(b["id"], timeout=30)
    assert final["state"] == "COMPLETED" and final["sealed"] is True, final
    check_children(fake, b["id"], 27)


def test_long_polls_wake_on_an_append_and_on_the_seal(api, fake):
    b = create_unsealed(api, 2)
    wait_until(lambda: launched(api, b["id"]) == 2, 20, what="2 children launched")

    def long_poll(view, out):
        t0 = time.monotonic()
        out["view"] = api.batch(b["id"], wait_s=25, after_version=view["version"])
        out["took"] = time.monotonic() - t0

    for change in ("append", "seal"):
        if change == "seal":
            # The appended run's launch changes the batch too: let it land first, so that what
            # wakes the poll is the seal.
            wait_until(lambda: launched(api, b["id"]) == 3, 20, what="the appended run launched")
        before = api.batch(b["id"])
        out = {}
        poll = threading.Thread(target=long_poll, args=(before, out))
        poll.start()
        time.sleep(0.3)  # let the poll reach floodgated (it returns at once if it is late)
        if change == "append":
            append(api, b["id"], runs(2, 1))
        else:
            assert api.control(b["id"], "seal").status == 200
        poll.join(30)
        assert out["took"] < 20, f"the long-poll was not woken by the {change}: {out}"
        assert out["view"]["version"] > before["version"]
        if change == "append":
            assert out["view"]["total"] == 3
        else:
            assert out["view"]["sealed"] is True
    assert api.wait_state(b["id"], timeout=20)["state"] == "COMPLETED"
    check_children(fake, b["id"], 3)
