"""A web page on another origin (another loopback port) attacks floodgated from headless
Chromium with every request a page can send without CORS permission (issue 11). Nothing may
be created or changed, and floodgated must stay up.

The page reports what its requests did to the test's own page server (same origin), so the test
waits for that report instead of a fixed time."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import tempfile
import threading
import urllib.parse

import pytest

from harness import DEMO_DEPLOYMENT, parse_metrics, raw_request, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PAGE = """<!doctype html><html><body><pre id="out">running</pre><script>
const target = %(target)s;
const batch = %(batch)s;
const body = JSON.stringify({deployment: %(deployment)s, track: false,
                             runs: [{parameters: {from: "browser"}}]});
const nested = '{"deployment": ' + JSON.stringify(%(deployment)s) +
    ', "runs": [{"parameters": {"a": ' + '['.repeat(100000) + '}}]}';
const attacks = {
  "text/plain; charset=json": () => fetch(target + "/v1/batches", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain; charset=json"}, body}),
  "form-urlencoded; a=json": () => fetch(target + "/v1/batches", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "application/x-www-form-urlencoded; a=json"}, body}),
  "multipart; boundary=json": () => fetch(target + "/v1/batches", {method: "POST",
      mode: "no-cors", headers: {"Content-Type": "multipart/form-data; boundary=json"}, body}),
  "sendBeacon string": async () => navigator.sendBeacon(target + "/v1/batches", body),
  "sendBeacon untyped Blob": async () => navigator.sendBeacon(target + "/v1/batches",
      new Blob([body])),
  "Blob without type": () => fetch(target + "/v1/batches", {method: "POST", mode: "no-cors",
      body: new Blob([body])}),
  "Uint8Array": () => fetch(target + "/v1/batches", {method: "POST", mode: "no-cors",
      body: new TextEncoder().encode(body)}),
  "nested body": () => fetch(target + "/v1/batches", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: nested}),
  "nested body as Blob": () => fetch(target + "/v1/batches", {method: "POST", mode: "no-cors",
      body: new Blob([nested])}),
  "cors application/json": () => fetch(target + "/v1/batches", {method: "POST",
      headers: {"Content-Type": "application/json"}, body}),
  "cancel by beacon": async () => navigator.sendBeacon(target + "/v1/batches/" + batch + "/cancel"),
  "pause by fetch": () => fetch(target + "/v1/batches/" + batch + "/pause", {method: "POST",
      mode: "no-cors"}),
  "patch": () => fetch(target + "/v1/batches/" + batch, {method: "PATCH",
      headers: {"Content-Type": "text/plain"}, body: '{"priority": 7}'}),
};
(async () => {
  const results = {};
  for (const [name, attack] of Object.entries(attacks)) {
    try {
      const r = await attack();
      results[name] = r === true || r === false ? "beacon queued: " + r : "sent (" + r.type + ")";
    } catch (e) {
      results[name] = "blocked: " + e;
    }
  }
  // Beacons go out asynchronously; a same-origin round trip gives them time to leave.
  await new Promise(r => setTimeout(r, 500));
  await fetch("/report", {method: "POST", body: JSON.stringify(results)});
  document.getElementById("out").textContent = JSON.stringify(results);
})();
</script></body></html>"""


class PageServer:
    """Serves the attack page on its own loopback port and collects the page's report."""

    def __init__(self, page: str):
        self.report: dict | None = None
        self.done = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                data = page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                outer.report = json.loads(self.rfile.read(n))
                self.send_response(204)
                self.end_headers()
                outer.done.set()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                    "(scripts/install-deps.sh installs it)")
@pytest.mark.time_limit(90)
def test_a_foreign_page_can_neither_create_nor_change_nor_kill(fg, fake, tmp_path):
    api = fg.client
    # Two runs at one launch per 1000 s: the batch stays RUNNING for the whole test.
    batch = api.submit({"deployment": DEMO_DEPLOYMENT, "track": False, "runs": [{}, {}],
                        "limits": {"launches_per_second": 0.001, "burst": 1}})["id"]
    wait_until(lambda: fake.stats()["runs"] == 1, 20)
    created_before = fake.stats()["runs"]
    page = PAGE % {"target": json.dumps(api.base), "batch": json.dumps(batch),
                   "deployment": json.dumps(DEMO_DEPLOYMENT)}
    server = PageServer(page)
    profile = tempfile.mkdtemp(dir=tmp_path)
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         f"http://127.0.0.1:{server.port}/"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "chromium.log", "wb"))
    try:
        assert server.done.wait(60), "the page never reported (see chromium.log)"
    finally:
        browser.kill()
        browser.wait(10)
        server.close()
    report = server.report
    assert set(report) >= {"text/plain; charset=json", "sendBeacon untyped Blob", "nested body"}
    # The CORS request is stopped by the browser at its preflight: no grant is given.
    assert report["cors application/json"].startswith("blocked"), report

    assert fg.running, "floodgated died"
    assert raw_request(api.base, "GET", "/healthz").status == 200
    batches = json.loads(raw_request(api.base, "GET", "/v1/batches").body)["batches"]
    assert [b["id"] for b in batches] == [batch], report
    view = json.loads(raw_request(api.base, "GET", f"/v1/batches/{batch}").body)
    assert view["state"] == "RUNNING", view
    assert view["priority"] == 0, view
    assert fake.stats()["runs"] == created_before
    # And the refusals were counted: the only 201 is the test's own submission.
    m = parse_metrics(api.metrics())
    assert m.get('floodgate_api_requests_total{code="201",route="/v1/batches"}') == 1, m
    assert m.get('floodgate_api_requests_total{code="403",route="/v1/batches"}', 0) >= 5, m
