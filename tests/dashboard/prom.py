"""A Prometheus server for tests: scratch config and storage, a free loopback port."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from harness import free_port, tail, wait_until


class Prometheus:
    def __init__(self, workdir: Path, targets: list[str], scrape_interval: str = "1s"):
        self.binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        cfg = workdir / "prometheus.yml"
        cfg.write_text(
            "global:\n"
            f"  scrape_interval: {scrape_interval}\n"
            f"  evaluation_interval: {scrape_interval}\n"
            "scrape_configs:\n"
            "  - job_name: floodgate\n"
            f"    scrape_interval: {scrape_interval}\n"
            f"    scrape_timeout: {scrape_interval}\n"
            f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n")
        self.cmd = [self.binary, f"--config.file={cfg}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1d", "--log.level=warn"]
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Prometheus":
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: self._ready(), 60, 0.2, what="Prometheus ready")
        except AssertionError:
            raise AssertionError("Prometheus did not start:\n" + tail(self.log_path))
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError("Prometheus exited:\n" + tail(self.log_path))
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str, **params) -> dict:
        """GET /api/v1/<path>; returns the parsed body whatever the status (errors included)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            return json.load(e)

    def targets_up(self) -> bool:
        r = self.api("query", query='up{job="floodgate"}')
        return any(s["value"][1] == "1" for s in r.get("data", {}).get("result", []))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()


def substitute(expr: str, variables: dict[str, str], rate_interval: str) -> str:
    """Replaces Grafana's variables the way Grafana would for these values."""
    out = expr.replace("$__rate_interval", rate_interval)
    for name in sorted(variables, key=len, reverse=True):
        out = out.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    return out


def now() -> float:
    return time.time()
