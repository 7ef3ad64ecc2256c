"""Failing disks: the store's file system fills up mid-batch, the database file becomes
immutable, floodgated starts on a database it cannot write, and SIGTERM arrives while nothing
can be written. Every case ends with every child launched exactly once.

Needs root (mount a small tmpfs, chattr); CI runs the test command as root."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from harness import DEMO_DEPLOYMENT, assert_exactly_once, tail, wait_until



def _cannot_here() -> str | None:
    """Why these tests cannot run on this machine, or None. Being root is not enough: a container
    without CAP_SYS_ADMIN cannot mount, one without CAP_LINUX_IMMUTABLE cannot chattr +i. The
    probe does what the tests do, on a tmpfs of its own, and names what failed."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        return "needs root and chattr (mount a tmpfs, chattr +i)"
    probe = Path(tempfile.mkdtemp(prefix="fg-disk-probe-"))
    try:
        plain = probe.parent / (probe.name + "-plain")  # the temp folder's own file system
        for cmd in (["touch", str(plain)], ["chattr", "+i", str(plain)],
                    ["chattr", "-i", str(plain)],
                    ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                    ["touch", str(probe / "f")], ["chattr", "+i", str(probe / "f")],
                    ["chattr", "-i", str(probe / "f")]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                return f"`{' '.join(cmd[:2])}` is not permitted here: {r.stderr.strip()}"
        return None
    finally:
        subprocess.run(["umount", "-l", str(probe)], capture_output=True)
        shutil.rmtree(probe, ignore_errors=True)
        Path(str(probe) + "-plain").unlink(missing_ok=True)


_WHY_NOT = _cannot_here()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=str(_WHY_NOT))

RETRY = {"max_attempts": 20, "initial_delay_s": 0.05, "max_delay_s": 1}


def batch(total: int) -> dict:
    return {"deployment": DEMO_DEPLOYMENT, "track": False, "retry": RETRY,
            "runs": [{"parameters": {"i": i}} for i in range(total)]}


@pytest.fixture
def small_fs(tmp_path):
    """A 4 MiB tmpfs for the database (the logs stay outside it)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    yield mnt
    for p in mnt.iterdir():
        subprocess.run(["chattr", "-i", str(p)], check=False, capture_output=True)
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path) -> Path:
    """Fills the file system to the last byte; returns the filler file."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def readyz(fg) -> tuple[int, dict]:
    r = fg.client.request("GET", "/readyz")
    return r.status, r.json


def wait_not_ready_for_store(fg, timeout: float = 30) -> dict:
    def store_failing():
        status, body = readyz(fg)
        return status == 503 and "store cannot be written" in body.get("reason", "") and body
    return wait_until(store_failing, timeout, 0.05, what="/readyz 503 for the store")


def wait_ready(fg, timeout: float = 30) -> None:
    wait_until(lambda: readyz(fg)[0] == 200, timeout, 0.05, what="/readyz 200 again")


@pytest.mark.time_limit(120)
def test_disk_full_mid_batch_then_space_returns(start_floodgated, fake, small_fs):
    total = 120
    fg = start_floodgated("--db", f"sqlite:///{small_fs}/fg.db", "--rate", "30/s", "--bulk", "false")
    b = fg.client.submit(batch(total))
    wait_until(lambda: fake.stats()["runs"] >= 10, 30, 0.02, what="10 runs on the fake")
    filler = fill(small_fs)
    body = wait_not_ready_for_store(fg)
    assert "No space" in body["reason"] or "full" in body["reason"], body
    assert fake.stats()["runs"] < total, "the batch finished before the disk filled; slow it"
    # A new batch cannot be written: the client is told so, nothing is accepted silently.
    r = fg.client.request("POST", "/v1/batches", batch(3), timeout=60)
    assert r.status == 503, r
    assert "could not store the batch" in r.json["detail"], r
    filler.unlink()
    wait_ready(fg)
    final = fg.client.wait_state(b["id"], timeout=90)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["LAUNCHED"] == total
    assert_exactly_once(fake.runs(), b["id"], total)
    log = fg.log_path.read_text()
    assert "store write failed; retrying" in log and "store writes succeed again" in log


@pytest.mark.time_limit(120)
def test_sigterm_while_the_disk_is_full_ends_within_the_drain_timeout(start_floodgated, fake,
                                                                        small_fs):
    total = 120
    fg = start_floodgated("--db", f"sqlite:///{small_fs}/fg.db", "--rate", "30/s",
                          "--bulk", "false", "--drain-timeout", "2")
    b = fg.client.submit(batch(total))
    wait_until(lambda: fake.stats()["runs"] >= 10, 30, 0.02, what="10 runs on the fake")
    filler = fill(small_fs)
    wait_not_ready_for_store(fg)
    t0 = time.monotonic()
    fg.proc.send_signal(signal.SIGTERM)
    code = fg.proc.wait(20)
    took = time.monotonic() - t0
    log = fg.log_path.read_text()
    assert took < 2 + 3, f"SIGTERM took {took:.1f}s with --drain-timeout 2:\n{tail(fg.log_path)}"
    assert "stopping without these changes" in log, tail(fg.log_path)
    assert "item_updates_not_written" in log
    print(f"SIGTERM with a full disk: exit {code} after {took:.2f}s")
    # Space returns; the next start finishes the batch, every child once.
    filler.unlink()
    fg.start()
    final = fg.client.wait_state(b["id"], timeout=90)
    assert final["state"] == "COMPLETED", final
    assert final["counts"]["LAUNCHED"] == total
    assert_exactly_once(fake.runs(), b["id"], total)


@pytest.mark.time_limit(120)
def test_immutable_database_file_while_running_then_writable_again(start_floodgated, fake):
    total = 120
    # On the temp folder's own file system, not the tmpfs: tmpfs lets writes through descriptors
    # that were open before chattr +i, ext4 refuses them.
    fg = start_floodgated("--rate", "30/s", "--bulk", "false")
    db = fg.db_path
    b = fg.client.submit(batch(total))
    wait_until(lambda: fake.stats()["runs"] >= 10, 30, 0.02, what="10 runs on the fake")
    # Not the -shm file: SQLite maps it into memory, and the kernel answers a write to a mapped
    # page of an immutable file with SIGBUS, which no process survives (seen: floodgated exited
    # with 135 in 2 runs of 8 while the test made -shm immutable too).
    files = [p for p in (db, Path(f"{db}-wal")) if p.exists()]
    try:
        # The WAL file takes the item updates; making it (and the database) immutable makes
        # every write fail, even on the descriptors already open.
        for p in files:
            subprocess.run(["chattr", "+i", str(p)], check=True)
        wait_not_ready_for_store(fg)
    finally:
        for p in files:
            subprocess.run(["chattr", "-i", str(p)], check=False)
    wait_ready(fg)
    final = fg.client.wait_state(b["id"], timeout=90)
    assert final["state"] == "COMPLETED", final
    assert_exactly_once(fake.runs(), b["id"], total)


@pytest.mark.time_limit(60)
def test_start_on_an_immutable_database_is_refused_clearly(start_floodgated, fake, small_fs):
    # On the tmpfs: chattr works there on every machine that can mount one (not on overlayfs).
    fg = start_floodgated("--db", f"sqlite:///{small_fs}/fg.db")
    b = fg.client.submit(batch(3))
    fg.client.wait_state(b["id"])
    assert fg.terminate() == 0
    subprocess.run(["chattr", "+i", str(small_fs / "fg.db")], check=True)
    try:
        with pytest.raises(RuntimeError) as failed:
            fg.start()
        assert "floodgated exited with 1" in str(failed.value), failed.value
        assert "the database file is read-only" in tail(fg.log_path), tail(fg.log_path)
    finally:
        subprocess.run(["chattr", "-i", str(small_fs / "fg.db")], check=False)


@pytest.mark.time_limit(60)
def test_start_on_a_read_only_mount_is_refused_clearly(start_floodgated, fake, small_fs):
    fg = start_floodgated("--db", f"sqlite:///{small_fs}/fg.db")
    assert fg.terminate() == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    with pytest.raises(RuntimeError) as failed:
        fg.start()
    assert "floodgated exited with 1" in str(failed.value), failed.value
    assert "the database file is read-only" in tail(fg.log_path), tail(fg.log_path)
