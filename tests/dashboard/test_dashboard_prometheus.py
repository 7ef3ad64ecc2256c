"""Every panel of the Grafana dashboard, evaluated for real.

A real Prometheus (Debian's package) scrapes floodgated every second while floodgated launches
and tracks a batch against the fake Prefect with faults on (503s, 429s with Retry-After, latency,
failing children). Then each panel's every query, with the dashboard's variables substituted as
Grafana would, is evaluated through Prometheus's HTTP API over the run: the test fails if one
does not parse or returns no series. With FG_DASHBOARD_PNG=path it also draws what the panels
show (docs/img/dashboard-run.png is made that way, see docs/operations.md)."""
import json
import math
import os
import time
from pathlib import Path

import pytest

from harness import DEMO_DEPLOYMENT, raw_request, wait_until
from prom import Prometheus, substitute

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "floodgate" / "dashboards" / "floodgate.json"
SCRAPE_S = 1
# Grafana's $__rate_interval: max(4 x scrape interval, step + scrape interval); step is 1 s here.
RATE_INTERVAL = f"{4 * SCRAPE_S}s"


def panels():
    d = json.loads(DASHBOARD.read_text())
    return [p for p in d["panels"] if p["type"] != "row"]


@pytest.fixture
def prometheus(tmp_path):
    proms = []

    def start(targets):
        (tmp_path / "prom").mkdir(exist_ok=True)
        p = Prometheus(tmp_path / "prom", targets, f"{SCRAPE_S}s")
        proms.append(p)
        return p.start()

    yield start
    for p in proms:
        p.stop()


@pytest.mark.time_limit(240)
def test_every_panel_query_returns_series_for_a_faulty_run(fake, start_floodgated, prometheus):
    fake.config(error_rate=0.12, error_status=503, rate_429=0.04, retry_after_s=1,
                latency_ms=4, latency_jitter_ms=8,
                run_schedule={"scheduled_ms": 400, "pending_ms": 300, "running_ms": 3000,
                              "fail_rate": 0.08})
    # One create request per child (no bulk), so the token bucket visibly paces the launches.
    fg = start_floodgated("--rate", "40/s", "--bulk", "false")
    target = f"127.0.0.1:{fg.port}"
    prom = prometheus([target])
    wait_until(prom.targets_up, 30, 0.2, what="Prometheus scraping floodgated")
    start = time.time()

    total = 400
    b = fg.client.submit({"deployment": DEMO_DEPLOYMENT,
                          "runs": [{"parameters": {"i": i}} for i in range(total)],
                          "tolerated_failure_percentage": 100})
    bid = b["id"]
    base = f"http://{target}"
    seen_eta = False

    def finished():
        nonlocal seen_eta
        # Some API errors for the error-ratio panel: an unknown batch is a 404.
        raw_request(base, "GET", "/v1/batches/00000000-0000-4000-8000-00000000dead")
        r = prom.api("query", query=f'floodgate_batch_eta_seconds{{batch_id="{bid}"}}')
        seen_eta = seen_eta or bool(r["data"]["result"])
        batch = fg.client.batch(bid)
        return batch if batch["state"] in ("COMPLETED", "FAILED") else None

    batch = wait_until(finished, 180, 0.5, what="the batch to finish")
    time.sleep(3 * SCRAPE_S)  # the last scrapes see the batch's end
    end = time.time()
    assert batch["counts"]["COMPLETED"] + batch["counts"]["FAILED"] + batch["counts"][
        "CRASHED"] + batch["counts"]["LAUNCH_FAILED"] == total, batch["counts"]
    stats = fake.stats()
    assert seen_eta, "no ETA series while the batch ran"

    # The variables, as Grafana would fill them, from Prometheus's own label values.
    variables = {"datasource": "prometheus", "job": "floodgate", "instance": target}
    d = json.loads(DASHBOARD.read_text())
    for v in d["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = substitute(v["query"]["query"], variables, RATE_INTERVAL)
        metric_sel, label = q[len("label_values("):-1].rsplit(",", 1)
        r = prom.api(f"label/{label.strip()}/values", **{"match[]": metric_sel.strip()},
                     start=start, end=end)
        assert r["status"] == "success" and r["data"], (v["name"], q, r)
        if v["name"] == "batch":
            assert bid in r["data"], r
    variables["batch"] = ".*"

    results = {}
    failures = []
    for p in panels():
        for t in p["targets"]:
            expr = substitute(t["expr"], variables, RATE_INTERVAL)
            assert "$" not in expr.replace("${1}", ""), f"unsubstituted variable in {expr}"
            r = prom.api("query_range", query=expr, start=start, end=end, step=SCRAPE_S)
            if r.get("status") != "success":
                failures.append(f"{p['title']} [{t['refId']}]: {r.get('error')} in {expr}")
                continue
            series = r["data"]["result"]
            finite = [s for s in series
                      if any(math.isfinite(float(v)) for _, v in s["values"])]
            if not finite:
                failures.append(f"{p['title']} [{t['refId']}]: no series for {expr}")
            results[(p["title"], t["refId"])] = (t["legendFormat"], series)
    assert not failures, "\n".join(failures)
    assert len(results) == sum(len(p["targets"]) for p in panels())

    # The faults happened, so the error panels show real errors, not zeros.
    by_class = {tuple(sorted(s["metric"].items())): s for s in
                results[("Prefect error ratio by status class", "A")][1]}
    assert any(dict(k).get("status_class") in ("5xx", "4xx") for k in by_class), by_class
    assert stats["faults"]["error"] > 0 and stats["faults"]["429"] > 0, stats["faults"]

    png = os.environ.get("FG_DASHBOARD_PNG")
    if png:
        from plot import draw
        draw(results, start, Path(png), bid)
