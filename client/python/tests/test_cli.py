"""The floodgate command line, run as a real process (``python -m floodgate``)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, Optional

import pytest

from conftest import PKG_ROOT, FakePrefect, Floodgated, free_port, slow
from floodgate import Batch, FloodgateClient
from floodgate.cli import Progress, _allocate, _limits, build_parser, main

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def cli(*args: str, url: Optional[str] = None, timeout: float = 120,
        stdin: Optional[str] = None) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PKG_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("FLOODGATE_URL", None)
    if url is not None:
        env["FLOODGATE_URL"] = url
    return subprocess.run([sys.executable, "-m", "floodgate", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, input=stdin)


def test_submit_wait_completed(floodgated: Floodgated, fake: FakePrefect) -> None:
    marker = uuid.uuid4().hex
    p = cli("submit", "demo-flow/demo", "--params", json.dumps({"i": "{index}", "m": marker,
                                                                 "name": "r-{index}"}),
            "--count", "4", "--max-running", "2", "--tag", "cli", "--wait",
            url=floodgated.url)
    assert p.returncode == 0, p.stderr
    batch_id = p.stdout.strip()
    assert UUID_RE.match(batch_id), p.stdout
    assert f"batch {batch_id} COMPLETED: 4/4 done, 0 failed" in p.stderr
    params = sorted((r["parameters"] for r in fake.runs() if r["parameters"].get("m") == marker),
                    key=lambda x: x["i"])
    assert params == [{"i": i, "m": marker, "name": f"r-{i}"} for i in range(4)]
    batch = FloodgateClient(floodgated.url).get(batch_id)
    assert batch.raw["tags"] == ["cli"] and batch.raw["limits"]["max_running"] == 2


def test_submit_in_chunks_twice_with_one_key(floodgated: Floodgated, fake: FakePrefect) -> None:
    marker = uuid.uuid4().hex
    key = f"cli-chunks-{marker}"
    args = ("submit", "demo-flow/demo", "--params", json.dumps({"i": "{index}", "m": marker}),
            "--count", "7", "--chunk-size", "3", "--no-track", "--idempotency-key", key)
    p = cli(*args, "--wait", url=floodgated.url)
    assert p.returncode == 0, p.stderr
    batch_id = p.stdout.strip()
    assert f"batch {batch_id} COMPLETED: 7/7 done" in p.stderr
    again = cli(*args, url=floodgated.url)  # a retried submit: nothing is appended twice
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == batch_id
    batch = FloodgateClient(floodgated.url).get(batch_id)
    assert batch.total == 7 and batch.raw["sealed"] is True
    params = sorted(r["parameters"]["i"] for r in fake.runs()
                    if r["parameters"].get("m") == marker)
    assert params == list(range(7))


def test_submit_wait_failed_exit_1(floodgated: Floodgated) -> None:
    p = cli("submit", "demo-flow/demo", "--params", "{}", "--params",
            '{"__fake_final": "FAILED"}', "--wait", url=floodgated.url)
    assert p.returncode == 1, p.stderr
    assert "FAILED" in p.stderr
    assert re.search(r"\[1\] FAILED flow_run_id=[0-9a-f-]{36}", p.stderr), p.stderr


def test_submit_params_file_and_runs(floodgated: Floodgated, tmp_path: Path) -> None:
    f = tmp_path / "params.jsonl"
    f.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3}\n')
    p = cli("--url", floodgated.url, "submit", "demo-flow/demo", "--params-file", str(f),
            "--json")
    assert p.returncode == 0, p.stderr
    batch = json.loads(p.stdout)
    assert batch["total"] == 3
    w = cli("watch", batch["id"], "--url", floodgated.url)
    assert w.returncode == 0, w.stderr

    table = cli("runs", batch["id"], url=floodgated.url)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["INDEX", "STATE", "FLOW_RUN_ID", "FLOW_RUN_STATE", "ATTEMPTS",
                                "LAST_ERROR"]
    assert [ln.split()[:2] for ln in lines[1:]] == [[str(i), "COMPLETED"] for i in range(3)]

    js = cli("runs", batch["id"], "--json", "--state", "COMPLETED", url=floodgated.url)
    assert [json.loads(ln)["index"] for ln in js.stdout.splitlines()] == [0, 1, 2]

    got = cli("get", batch["id"], url=floodgated.url)
    assert got.returncode == 0 and json.loads(got.stdout)["state"] == "COMPLETED"

    listed = cli("list", "--state", "COMPLETED", url=floodgated.url)
    assert listed.returncode == 0
    assert any(ln.startswith(batch["id"]) and "COMPLETED" in ln and "3/3" in ln
               for ln in listed.stdout.splitlines())


def test_runs_file_from_stdin(floodgated: Floodgated, fake: FakePrefect) -> None:
    name = "cli-" + uuid.uuid4().hex[:8]
    specs = "\n".join(json.dumps({"parameters": {"x": i}, "name": f"{name}-{i}"})
                      for i in range(2))
    p = cli("submit", "demo-flow/demo", "--runs-file", "-", "--wait", url=floodgated.url,
            stdin=specs)
    assert p.returncode == 0, p.stderr
    assert sorted(r["name"] for r in fake.runs() if r["name"].startswith(name)) == [
        f"{name}-0", f"{name}-1"]


def test_watch_non_tty_output(floodgated: Floodgated) -> None:
    c = FloodgateClient(floodgated.url)
    batch = c.submit("demo-flow/demo", [{"parameters": slow(400)} for _ in range(8)],
                     limits={"max_running": 2})
    started = time.monotonic()
    p = cli("watch", batch.id, url=floodgated.url)
    elapsed = time.monotonic() - started
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines, "watch printed progress"
    assert "\r" not in p.stdout and "\x1b" not in p.stdout  # plain lines, no redraws
    pattern = re.compile(rf"^\d\d:\d\d:\d\d batch {batch.id} [A-Z]+ \d+/8 \(\d+%\)  failed 0")
    assert all(pattern.match(ln) for ln in lines), lines
    assert "COMPLETED 8/8 (100%)" in lines[-1]
    # at most one line per 2 s, besides the last
    assert len(lines) <= elapsed / 2 + 2


def test_watch_exit_codes(floodgated: Floodgated) -> None:
    c = FloodgateClient(floodgated.url)
    long = c.submit("demo-flow/demo", [{"parameters": slow(20000)}])
    p = cli("watch", long.id, "--timeout", "1", url=floodgated.url)
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert "keeps running" in p.stderr
    cancel = cli("cancel", long.id, "--on-cancel", "cancel_children", url=floodgated.url)
    assert cancel.returncode == 0 and "CANCELLED" in cancel.stdout
    p = cli("watch", long.id, url=floodgated.url)
    assert p.returncode == 1
    assert "CANCELLED" in p.stdout


def test_control_commands(floodgated: Floodgated) -> None:
    c = FloodgateClient(floodgated.url)
    batch = c.submit("demo-flow/demo", [{"parameters": slow(300)} for _ in range(4)],
                     limits={"max_running": 1})
    p = cli("pause", batch.id, url=floodgated.url)
    assert p.returncode == 0 and f"batch {batch.id} PAUSED" in p.stdout, p.stderr
    p = cli("update", batch.id, "--max-running", "4", "--tolerated-failure-count", "1",
            url=floodgated.url)
    assert p.returncode == 0, p.stderr
    assert c.get(batch.id).raw["limits"]["max_running"] == 4
    p = cli("resume", batch.id, url=floodgated.url)
    assert p.returncode == 0 and "RUNNING" in p.stdout
    p = cli("resume", batch.id, url=floodgated.url)
    assert p.returncode == 2 and "409" in p.stderr  # not paused: a conflict
    assert cli("watch", batch.id, url=floodgated.url).returncode == 0
    p = cli("redrive", batch.id, url=floodgated.url)
    assert p.returncode == 2 and "no failed or skipped items" in p.stderr


def test_exit_3_when_floodgate_is_down() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["get", "x"], ["submit", "f/d", "--count", "1", "--wait"], ["watch", "x"],
                 ["list"]):
        p = cli("--retries", "0", *args, url=url)
        assert p.returncode == 3, (args, p.stderr)
        assert f"cannot reach floodgate at {url}" in p.stderr


def test_usage_errors_exit_2(floodgated: Floodgated, tmp_path: Path) -> None:
    assert cli(url=floodgated.url).returncode == 2  # no command
    assert cli("submit", "demo-flow/demo", url=floodgated.url).returncode == 2  # no runs
    p = cli("submit", "demo-flow/demo", "--params", "{nope", url=floodgated.url)
    assert p.returncode == 2 and "not valid JSON" in p.stderr
    p = cli("submit", "demo-flow/demo", "--params", "[1]", url=floodgated.url)
    assert p.returncode == 2 and "must be a JSON object" in p.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{"a": \n')
    p = cli("submit", "demo-flow/demo", "--params-file", str(bad), url=floodgated.url)
    assert p.returncode == 2 and f"{bad}:2" in p.stderr
    p = cli("submit", "no-slash", "--count", "1", url=floodgated.url)
    assert p.returncode == 2 and "deployment" in p.stderr  # floodgate's 422
    p = cli("runs", "x", "--state", "WHATEVER", url=floodgated.url)
    assert p.returncode == 2
    p = cli("get", "no-such-batch", url=floodgated.url)
    assert p.returncode == 2 and "404" in p.stderr


def test_version_and_help() -> None:
    p = cli("--version")
    assert p.returncode == 0 and p.stdout.startswith("floodgate ")
    p = cli("--help")
    assert p.returncode == 0 and "Exit codes" in p.stdout


# ------------------------------------------------------------------------------------------
# The progress display, in process


def _batch(state: str, counts: Dict[str, int], version: int, total: int = 10) -> Batch:
    return Batch.from_json({"id": "b", "state": state, "total": total, "counts": counts,
                            "version": version, "created_at": "2026-01-01T00:00:00Z",
                            "finished_at": "2026-01-01T00:01:05Z" if state == "COMPLETED"
                            else None})


class _Tty(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def test_progress_tty_redraws_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    out = _Tty()
    p = Progress(out)
    assert p.tty and p.color
    p.update(_batch("RUNNING", {"COMPLETED": 3, "FAILED": 1, "LAUNCHED": 2, "PENDING": 4}, 2))
    p.finish(_batch("COMPLETED", {"COMPLETED": 9, "FAILED": 1}, 5))
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    frames = text.rstrip("\n").split("\r")[1:]
    assert len(frames) == 2
    assert "\x1b[32m" in frames[0] and "\x1b[31m" in frames[0] and "\x1b[36m" in frames[0]
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", frames[0])
    assert plain.startswith("RUNNING")
    assert "4/10 (40%)" in plain and "failed 1" in plain and "running 2" in plain
    assert "█" in plain and "░" in plain
    last = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", frames[1])
    assert "COMPLETED" in last and "10/10 (100%)" in last and "took 1:05" in last


def test_progress_rate_and_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("floodgate.cli.time.monotonic", lambda: now[0])
    out = _Tty()
    p = Progress(out, color=False)
    p.update(_batch("RUNNING", {"COMPLETED": 0, "PENDING": 10}, 1))
    now[0] = 104.0
    p.update(_batch("RUNNING", {"COMPLETED": 4, "PENDING": 6}, 2))
    frame = out.getvalue().split("\r")[-1]
    assert "1.0/s" in frame and "ETA 0:06" in frame


def test_progress_shows_the_servers_eta_and_what_the_batch_waits_on() -> None:
    out = _Tty()
    p = Progress(out, color=False)
    batch = Batch.from_json({
        "id": "b", "state": "RUNNING", "total": 10, "version": 3,
        "counts": {"COMPLETED": 4, "LAUNCHED": 3, "PENDING": 3},
        "progress": {"launch_rate": 2.0, "completion_rate": 0.5, "eta_s": 12.0,
                     "waiting_on": ["backlog", "token_bucket"], "backlog": 3,
                     "max_backlog": 3}})
    p.update(batch)
    frame = out.getvalue().split("\r")[-1]
    assert "0.5/s" in frame and "ETA 0:12" in frame, frame
    assert "waiting on backlog, token_bucket (3/3 waiting to start)" in frame, frame


def test_update_sends_max_backlog(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["update", "b", "--max-backlog", "0"])
    assert _limits(args) == {"max_backlog": 0}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["update", "b", "--max-backlog", "-1"])


def test_progress_plain_lines_are_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr("floodgate.cli.time.monotonic", lambda: now[0])
    out = io.StringIO()
    p = Progress(out)
    assert not p.tty
    p.update(_batch("RUNNING", {"PENDING": 10}, 1))
    now[0] = 0.5
    p.update(_batch("RUNNING", {"COMPLETED": 1, "PENDING": 9}, 2))  # too soon
    p.update(_batch("RUNNING", {"COMPLETED": 1, "PENDING": 9}, 2))
    now[0] = 2.6
    p.update(_batch("RUNNING", {"COMPLETED": 1, "PENDING": 9}, 2))  # due now
    now[0] = 2.7
    p.finish(_batch("COMPLETED", {"COMPLETED": 10}, 3))  # the end is always shown
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert " 1/10 " in lines[1] and "COMPLETED 10/10" in lines[2]


def test_bar_allocation() -> None:
    assert _allocate([3, 1, 0, 2], 10, 20) == [6, 2, 0, 4]
    assert sum(_allocate([1, 1, 1], 3, 10)) == 10
    assert _allocate([0, 0], 0, 10) == [0, 0]


def test_main_in_process(floodgated: Floodgated, capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    err = io.StringIO()
    code = main(["--url", floodgated.url, "submit", "demo-flow/demo", "--count", "2",
                 "--no-track", "--wait"], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    batch = FloodgateClient(floodgated.url).get(out.getvalue().strip())
    assert batch.track is False and batch.state == "COMPLETED"
    assert batch.counts["LAUNCHED"] == 2 and batch.done == 2
