"""Shared helpers for the chart's tests: render the chart with helm, parse the manifests."""
import os
import pathlib
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "floodgate"
HELM = os.environ.get("HELM_BIN", str(ROOT / ".tools" / "bin" / "helm"))
# Values files that must render: the defaults (None), every file under the chart's ci/ and
# every example under examples/.
VALUES_FILES = [None] + sorted(str(p) for p in (CHART / "ci").glob("*.yaml")) + sorted(
    str(p) for p in (CHART / "examples").glob("*.yaml"))


KUBE_VERSION = "1.30.0"  # helm template assumes 1.20 otherwise, below the chart's kubeVersion


def helm(*args, check=True):
    r = subprocess.run([HELM, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{r.stderr}")
    return r


def render(values_file=None, sets=(), namespace="floodgate", release="fg"):
    """Renders the chart; returns the list of manifests (dicts)."""
    args = ["template", release, str(CHART), "--namespace", namespace,
            "--kube-version", KUBE_VERSION]
    if values_file:
        args += ["-f", values_file]
    for s in sets:
        args += ["--set", s]
    out = helm(*args)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def render_error(values_file=None, sets=()):
    args = ["template", "fg", str(CHART), "--kube-version", KUBE_VERSION]
    if values_file:
        args += ["-f", values_file]
    for s in sets:
        args += ["--set", s]
    r = helm(*args, check=False)
    assert r.returncode != 0, "helm template should have refused these values"
    return r.stderr


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


@pytest.fixture(scope="session", autouse=True)
def _helm_exists():
    if not os.access(HELM, os.X_OK):
        pytest.fail(f"helm not found at {HELM} (scripts/chart-test.sh builds it)")


def values_id(v):
    if v is None:
        return "defaults"
    p = pathlib.Path(v)
    return f"{p.parent.name}/{p.stem}"
