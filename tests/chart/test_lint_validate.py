"""helm lint and offline validation of every rendered manifest against Kubernetes' schemas."""
import kubernetes_validate
import pytest
import yaml

from conftest import CHART, VALUES_FILES, helm, render, values_id

K8S_VERSION = "1.30.0"  # oldest version the chart is validated against; Chart.yaml says >=1.25
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}  # prometheus-operator CRDs: checked below


@pytest.mark.parametrize("values", VALUES_FILES, ids=values_id)
def test_helm_lint_strict(values):
    args = ["lint", "--strict", str(CHART)]
    if values:
        args += ["-f", values]
    r = helm(*args, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("version", [K8S_VERSION, kubernetes_validate.latest_version()])
@pytest.mark.parametrize("values", VALUES_FILES, ids=values_id)
def test_manifests_validate_against_kubernetes_schemas(values, version):
    docs = render(values)
    assert docs
    checked = 0
    for d in docs:
        if d["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{d['kind']}/{d['metadata']['name']}: {e.message} at {list(e.path)}")
        checked += 1
    assert checked >= 3  # at least the Deployment, its Service and its ConfigMap


def test_operator_kinds_have_the_operator_shape():
    docs = render(str(CHART / "ci" / "production-values.yaml"))
    sm = next(d for d in docs if d["kind"] == "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    ep = sm["spec"]["endpoints"][0]
    assert ep["port"] == "http" and ep["path"] == "/metrics"
    assert sm["spec"]["jobLabel"] == "app.kubernetes.io/name"
    pr = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert pr["apiVersion"] == "monitoring.coreos.com/v1"
    plain = yaml.safe_load((CHART / "rules" / "floodgate-alerts.yaml").read_text())
    # The PrometheusRule carries exactly the rules promtool checks and tests.
    assert [r["alert"] for g in pr["spec"]["groups"] for r in g["rules"]] == [
        r["alert"] for g in plain["groups"] for r in g["rules"]
    ]
    for g in pr["spec"]["groups"]:
        for r in g["rules"]:
            assert {"summary", "description", "runbook_url"} <= set(r["annotations"])
