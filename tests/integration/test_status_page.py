"""The status page (GET /, /status.js, /status.css): its security headers, and what it shows in
a real browser (Debian's chromium, headless) while batches run against the fake Prefect:
progress, launch rate, ETA, children running, links into Prefect's UI for the batch's runs and
each failed child, and the limiter line saying why launching is slow."""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from harness import DEMO_DEPLOYMENT, raw_request, wait_until

UI = "http://prefect-ui.example:4200"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def chromium_bin() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed (scripts/test.sh installs Debian's chromium)")


def browse(url: str, workdir: Path, screenshot: Path | None = None) -> tuple[str, str]:
    """Loads url in headless Chromium with a fresh profile; returns (DOM after scripts, log)."""
    profile = workdir / f"chromium-profile-{os.getpid()}-{len(list(workdir.glob('chromium-*')))}"
    base = [chromium_bin(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            "--enable-logging=stderr", "--v=0", "--window-size=1400,620",
            "--virtual-time-budget=4000"]
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    log = dom.stderr
    if screenshot is not None:
        shot = subprocess.run(base + [f"--screenshot={screenshot}", url], capture_output=True,
                              text=True, timeout=120)
        log += shot.stderr
        assert screenshot.exists(), shot.stderr[-2000:]
    assert dom.returncode == 0, log[-2000:]
    return dom.stdout, log


def assert_clean_console(log: str) -> None:
    """No CSP violation and no script error in the browser's console."""
    console = [l for l in log.splitlines() if ":CONSOLE" in l]
    bad = [l for l in console if "Content Security Policy" in l or "Refused to" in l
           or "Uncaught" in l]
    assert not bad, "\n".join(bad)


def text_of(dom: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)</div>', dom, re.S)
    assert m, f"no #{element_id} in the page"
    return html.unescape(re.sub(r"<[^>]+>", "", m.group(1)))


def rows(dom: str) -> list[str]:
    body = re.search(r'<tbody id="rows">(.*?)</tbody>', dom, re.S)
    assert body, dom[-2000:]
    return re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)


def test_page_and_assets_carry_a_strict_csp_and_no_inline_code(start_floodgated):
    fg = start_floodgated("--prefect-ui-url", UI + '/"><script>x</script>')
    base = f"http://127.0.0.1:{fg.port}"
    page = raw_request(base, "GET", "/")
    assert page.status == 200 and page.content_type.startswith("text/html")
    for path, ctype in (("/", "text/html"), ("/status.js", "text/javascript"),
                        ("/status.css", "text/css")):
        r = raw_request(base, "GET", path)
        assert r.status == 200 and r.content_type.startswith(ctype), (path, r)
        assert r.headers["content-security-policy"] == CSP, path
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    body = page.body.decode()
    # Nothing inline for the CSP to forbid: no inline script, style element, style attribute
    # or event handler.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body)
    assert "<style" not in body and not re.search(r"\sstyle=", body)
    assert not re.search(r"\son[a-z]+=", body)
    # The UI URL is an attribute value, escaped: it cannot close the tag.
    assert '"><script>x' not in body
    assert 'content="http://prefect-ui.example:4200/&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in body
    assert raw_request(base, "POST", "/status.js").status == 405
    assert raw_request(base, "GET", "/status.js/x").status == 404


@pytest.mark.time_limit(90)
def test_page_in_chromium_shows_rates_eta_running_links_and_the_running_cap(
        fake, start_floodgated, tmp_path):
    # 6 children fail at once, the others run for a long time; the batch may run 10 at a time.
    fake.config(run_schedule={"scheduled_ms": 0, "pending_ms": 0, "running_ms": 600_000})
    runs = ([{"parameters": {"i": i, "__fake_final": "FAILED", "__fake_running_ms": 0}}
             for i in range(6)]
            + [{"parameters": {"i": i}} for i in range(6, 40)])
    fg = start_floodgated("--prefect-ui-url", UI + "/")
    api = fg.client
    # 4 launches a second, so the page's one-minute launch rate sees them come in.
    b = api.submit({"deployment": DEMO_DEPLOYMENT, "runs": runs,
                    "limits": {"max_running": 10, "launches_per_second": 4, "burst": 1},
                    "tolerated_failure_percentage": 100})
    bid = b["id"]

    def capped():
        batch = api.batch(bid)
        if batch["counts"]["FAILED"] != 6 or batch["counts"]["LAUNCHED"] != 10:
            return None
        ready = raw_request(f"http://127.0.0.1:{fg.port}", "GET", "/readyz").json
        view = ready["engine"]["batches"].get(bid)
        return view if view and view["children_running"] == 10 and view["at_running_cap"] else None

    view = wait_until(capped, 30, 0.2, what="the batch at its running cap with 6 failures")
    assert view["max_running"] == 10 and view["launch_rate"] > 0
    failed = api.all_runs(bid, state="FAILED")
    assert len(failed) == 6

    shot = tmp_path / "status-page.png"
    dom, log = browse(f"http://127.0.0.1:{fg.port}/", tmp_path, shot)
    assert_clean_console(log)

    why = text_of(dom, "why")
    assert why.startswith("at the running cap: " + bid + " (10/10 running)"), why
    engine = text_of(dom, "engine")
    assert engine.startswith("ready · in flight") and "breaker closed" in engine, engine
    assert "token bucket off" in engine, engine  # no --rate: the bucket is not a limit
    (row,) = [r for r in rows(dom) if bid in r]
    cells = [html.unescape(re.sub(r"<[^>]+>", " ", c)).split()
             for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    # batch | state | progress | done/total | launch rate | ETA | running | failed | created
    assert cells[1] == ["RUNNING", "waiting", "on", "running_cap"]  # what holds it back
    assert cells[3] == ["6", "/", "40"]
    assert cells[4][-1] == "/s" and float(cells[4][0]) > 0, cells[4]
    assert cells[5] != ["–"] and cells[5][-1] in ("s", "min", "h"), cells[5]  # an ETA
    assert cells[6] == ["10"]
    # Bars are sized through the CSSOM (allowed by the CSP), not by style attributes in markup.
    assert re.search(r'<span class="FAILED" title="FAILED: 6" style="width: 15%;">', row), row
    runs_href = UI + "/runs?tags=" + urllib.parse.quote("floodgate-batch:" + bid, safe="")
    assert f'href="{runs_href}"' in row, row
    failed_links = set(re.findall(r'href="' + re.escape(UI) + r'/runs/flow-run/([0-9a-f-]+)"', row))
    assert failed_links == {r["flow_run_id"] for r in failed}
    assert 'target="_blank"' in row and 'rel="noopener noreferrer"' in row

    keep = os.environ.get("FG_STATUS_PNG")
    if keep:
        shutil.copy(shot, keep)


@pytest.mark.time_limit(90)
@pytest.mark.parametrize("fault,expect,engine_says", [
    ({"rate_429": 1.0, "retry_after_s": 60}, "paused by Retry-After: Prefect asked to wait",
     lambda e: e["paused_s"] > 0),
    # Prefect unreachable, retries quick enough to fill the breaker's window: it opens.
    ({"down": True}, "circuit breaker open: Prefect keeps failing",
     lambda e: e["breaker"] == "open"),
], ids=["retry_after", "breaker_open"])
def test_limiter_line_says_why_launching_stops(fake, start_floodgated, tmp_path, fault, expect,
                                               engine_says):
    fg = start_floodgated()
    fake.config(**fault)
    api = fg.client
    bid = api.submit({"deployment": DEMO_DEPLOYMENT, "tolerated_failure_percentage": 100,
                      "runs": [{"parameters": {"i": i}} for i in range(60)],
                      "retry": {"initial_delay_s": 0.01, "max_delay_s": 0.05,
                                "max_attempts": 1000}})["id"]
    base = f"http://127.0.0.1:{fg.port}"

    def held():
        return engine_says(raw_request(base, "GET", "/readyz").json["engine"])

    wait_until(held, 60, 0.2, what=expect)
    dom, log = browse(base + "/", tmp_path)
    assert_clean_console(log)
    why = text_of(dom, "why")
    assert why.startswith(expect), why
    assert any(bid in r for r in rows(dom))
