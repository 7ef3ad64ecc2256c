"""The Dockerfile's structure, and proof that its build steps are the ones CI runs.

No container engine runs here, so the image itself is not built by the test command. What is
proved instead: the build stage runs scripts/install-deps.sh and the `ci` CMake preset (both run
by scripts/test.sh), the runtime stage installs the package list scripts/runtime-libs.sh makes,
and that script, run on the floodgated CI built, resolves every library to a Debian package."""
import os
import re
import subprocess

import pytest

from conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions():
    """(stage, INSTRUCTION, argument) for each instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    stage = None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, arg = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage = arg.split(" AS ")[-1].strip() if " AS " in arg else arg
        out.append((stage, word, arg.strip()))
    return out


def stage_runs(stage):
    return [a for s, w, a in instructions() if s == stage and w == "RUN"]


def test_two_debian_12_stages():
    froms = [a for _, w, a in instructions() if w == "FROM"]
    assert froms == ["debian:12 AS build", "debian:12-slim AS runtime"]


def test_build_steps_are_the_ones_the_test_command_runs():
    runs = stage_runs("build")
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    lane = (ROOT / "scripts" / "chart-test.sh").read_text()
    assert runs[0] == "bash scripts/install-deps.sh"
    assert "bash scripts/install-deps.sh" in test_sh
    assert runs[1].startswith("cmake --preset ci >/dev/null && cmake --build --preset ci")
    assert "cmake --preset ci >/dev/null" in test_sh and "cmake --build --preset ci" in test_sh
    assert runs[2].startswith("bash scripts/runtime-libs.sh build/ci/service/floodgated")
    assert "scripts/runtime-libs.sh" in lane
    # Nothing else is fetched or compiled in the build stage.
    assert len(runs) == 3


def test_runtime_stage_is_slim_non_root_and_exec_form():
    ins = [(w, a) for s, w, a in instructions() if s == "runtime"]
    words = [w for w, _ in ins]
    runs = [a for w, a in ins if w == "RUN"]
    assert len(runs) == 1 and "xargs -a /runtime-packages.txt" in runs[0]
    assert "--no-install-recommends" in runs[0] and "rm -rf /var/lib/apt/lists/*" in runs[0]
    user = [a for w, a in ins if w == "USER"]
    assert user == ["10001:10001"]
    assert words.index("USER") > words.index("RUN")  # nothing runs as root after USER
    assert ("VOLUME", '["/var/lib/floodgate"]') in ins
    assert ("ENTRYPOINT", '["/usr/local/bin/floodgated"]') in ins  # PID 1, no shell
    assert ("STOPSIGNAL", "SIGTERM") in ins
    env = " ".join(a for w, a in ins if w == "ENV")
    assert "FLOODGATE_DB=sqlite:///var/lib/floodgate/floodgate.db" in env
    assert "FLOODGATE_LISTEN=0.0.0.0:8080" in env
    # The chart runs the same user and stores in the volume the image declares.
    import yaml
    values = yaml.safe_load((ROOT / "charts/floodgate/values.yaml").read_text())
    assert values["securityContext"]["runAsUser"] == 10001
    assert values["store"]["sqlite"]["path"].startswith("/var/lib/floodgate/")


def test_dockerignore_keeps_build_outputs_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for p in ("build/", ".git", ".venv*/", ".tools/"):
        assert p in ignored


def test_runtime_library_list_matches_the_built_binary():
    binary = os.environ.get("FLOODGATED_BIN", str(ROOT / "build/ci/service/floodgated"))
    if not os.access(binary, os.X_OK):
        pytest.fail(f"floodgated not built at {binary}")
    r = subprocess.run(["bash", str(ROOT / "scripts/runtime-libs.sh"), binary, "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pkgs = r.stdout.split()
    # Each library ldd resolves maps to a listed package; the list is exactly their union.
    mapped = re.findall(r"^(\S+) -> (\S+)$", r.stderr, re.M)
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = re.findall(r"=> (/\S+)", ldd)
    assert libs and {lib for lib, _ in mapped} >= set(libs)
    assert sorted({p for _, p in mapped}) == pkgs
    for needed in ("libcpprest2.10", "libsqlite3-0", "libssl3", "libprometheus-cpp-core1.0"):
        assert needed in pkgs
    # No build-only package (headers, compilers) slips into the runtime image.
    assert not [p for p in pkgs if p.endswith("-dev") or p in ("cmake", "g++", "gcc")]
