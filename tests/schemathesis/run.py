"""Runs schemathesis against a live floodgated (with the fake Prefect) from proto/openapi.yaml:
examples, coverage, fuzzing and the stateful phase (the spec's links: createBatch -> getBatch,
listRuns, updateBatch, pause/resume/cancel, appendRuns, sealBatch). Any server error or
contract failure fails the run.

Usage: python tests/schemathesis/run.py [extra schemathesis args]
Env: FLOODGATED_BIN, FAKE_PREFECT_BIN (as the integration tests), ST_MAX_EXAMPLES (default 10),
ST_MAX_TIME (seconds, default 150: the whole run's budget), ST_SEED (default 1), ST_BIN (the
schemathesis executable; default: next to this Python)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))

from harness import FakePrefect, Floodgated  # noqa: E402
from openapi_check import OpenApiChecker  # noqa: E402


def main() -> int:
    floodgated = Path(os.environ.get("FLOODGATED_BIN", REPO / "build/ci/service/floodgated"))
    fake_bin = Path(os.environ.get("FAKE_PREFECT_BIN", REPO / "build/ci/bin/fake-prefect"))
    st = os.environ.get("ST_BIN", str(Path(sys.executable).parent / "schemathesis"))
    max_examples = os.environ.get("ST_MAX_EXAMPLES", "10")
    with tempfile.TemporaryDirectory(prefix="fg-schemathesis-") as tmp:
        work = Path(tmp)
        fake = FakePrefect(fake_bin, work / "fake.log")
        fg = Floodgated(floodgated, fake, work, "floodgated",
                        checker=OpenApiChecker(REPO / "proto" / "openapi.yaml"))
        try:
            fg.start()
            base = f"http://127.0.0.1:{fg.port}"
            cmd = [st, "--config-file", str(HERE / "schemathesis.toml"), "run",
                   str(REPO / "proto" / "openapi.yaml"), "--url", base,
                   "--checks", "all", "--max-examples", max_examples,
                   "--max-time", os.environ.get("ST_MAX_TIME", "150"),
                   "--request-timeout", "30", "--seed", os.environ.get("ST_SEED", "1"),
                   *sys.argv[1:]]
            print("+", " ".join(cmd), flush=True)
            code = subprocess.run(cmd, cwd=work).returncode
            if not fg.running:
                print(f"floodgated died during the run:\n{fg.log_path.read_text()[-4000:]}")
                code = code or 1
            return code
        finally:
            try:
                fg.stop()
            finally:
                fake.stop()


if __name__ == "__main__":
    sys.exit(main())
