"""The chart's unit tests: helm template with chosen values, assertions on what it renders."""
import json
import os
import pathlib
import re
import subprocess

import pytest
import yaml

from conftest import CHART, ROOT, by_kind, one, render, render_error

PROD = str(CHART / "ci" / "production-values.yaml")
EXISTING = str(CHART / "ci" / "existing-secrets-values.yaml")
EPHEMERAL = str(CHART / "ci" / "ephemeral-values.yaml")
PG_CI = str(CHART / "ci" / "postgresql-values.yaml")


def container(docs):
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env_names(c):
    return {e["name"] for e in c.get("env", [])}


def test_default_install_is_one_sqlite_replica_on_a_pvc_with_recreate():
    docs = render()
    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pvc = one(docs, "PersistentVolumeClaim")
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    cm = one(docs, "ConfigMap") if len(by_kind(docs, "ConfigMap")) == 1 else next(
        d for d in by_kind(docs, "ConfigMap") if not d["metadata"]["name"].endswith("-dashboard"))
    assert cm["data"]["FLOODGATE_DB"] == "sqlite:///var/lib/floodgate/floodgate.db"
    assert cm["data"]["FLOODGATE_LISTEN"] == "0.0.0.0:8080"
    for kind in ("Service", "ServiceAccount", "NetworkPolicy"):
        one(docs, kind)
    assert not by_kind(docs, "ServiceMonitor") and not by_kind(docs, "PrometheusRule")


def test_probes_hit_healthz_and_readyz_on_the_named_port():
    c = container(render())
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


@pytest.mark.parametrize("drain", [5, 60, 300])
def test_grace_period_exceeds_the_drain_timeout(drain):
    docs = render(sets=[f"config.drainTimeoutSeconds={drain}"])
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    cm = next(d for d in by_kind(docs, "ConfigMap") if "FLOODGATE_DRAIN_TIMEOUT" in d["data"])
    assert cm["data"]["FLOODGATE_DRAIN_TIMEOUT"] == str(drain)
    assert spec["terminationGracePeriodSeconds"] > drain


def test_a_config_change_rolls_the_pod_and_a_no_change_does_not():
    def annotations(*sets):
        dep = one(render(PROD, sets=sets), "Deployment")
        return dep["spec"]["template"]["metadata"]["annotations"]

    a = annotations()
    assert re.fullmatch(r"[0-9a-f]{64}", a["checksum/config"])
    assert annotations() == a  # deterministic
    assert annotations("config.rate=10/s")["checksum/config"] != a["checksum/config"]
    assert annotations("prefect.apiKey=other")["checksum/secret"] != a["checksum/secret"]


def test_generated_token_is_consistent_within_one_render():
    docs = render()
    secret = next(d for d in by_kind(docs, "Secret") if d["metadata"]["name"].endswith("-tokens"))
    token = secret["stringData"]["generated-token"]
    assert len(token) == 40
    assert f"write admin {token}" in secret["stringData"]["tokens"]


def test_secrets_come_from_the_chart_or_from_existing_secrets():
    docs = render(PROD)
    c = container(docs)
    env = {e["name"]: e for e in c["env"]}
    key_ref = env["PREFECT_API_KEY"]["valueFrom"]["secretKeyRef"]
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    assert key_ref["name"] in secrets
    assert "pnu_example_key" not in json.dumps(by_kind(docs, "ConfigMap"))  # never in a ConfigMap
    tokens = secrets["fg-floodgate-tokens"]["stringData"]["tokens"]
    assert "write pipelines write-token-0123456789" in tokens
    assert "read dashboards read-token-0123456789" in tokens
    assert env["FLOODGATE_API_TOKENS_FILE"]["value"] == "/etc/floodgate/tokens/tokens"

    docs = render(EXISTING)
    assert not by_kind(docs, "Secret")
    assert not by_kind(docs, "PersistentVolumeClaim")
    assert not by_kind(docs, "ServiceAccount")
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "floodgate-sa"
    c = spec["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["PREFECT_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "prefect-credentials", "key": "api-key"}
    assert env["FLOODGATE_API_TOKENS_FILE"]["value"] == "/etc/floodgate/tokens/tokens.txt"
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["tokens"]["secret"]["secretName"] == "floodgate-tokens"
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == "floodgate-data"


def test_ephemeral_install_uses_an_empty_dir_and_says_no_auth():
    docs = render(EPHEMERAL)
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in vols["data"] and "tokens" not in vols
    assert not by_kind(docs, "PersistentVolumeClaim") and not by_kind(docs, "NetworkPolicy")
    cm = next(d for d in by_kind(docs, "ConfigMap") if "FLOODGATE_DB" in d["data"])
    assert cm["data"]["FLOODGATE_INSECURE_NO_AUTH"] == "true"


def test_scheduling_and_extras_reach_the_pod():
    spec = one(render(PROD), "Deployment")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in spec["affinity"]
    c = spec["containers"][0]
    assert {"name": "TZ", "value": "UTC"} in c["env"]
    assert {"name": "ca", "mountPath": "/etc/floodgate/ca", "readOnly": True} in c["volumeMounts"]
    assert any(v["name"] == "ca" for v in spec["volumes"])
    assert c["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert c["image"] == "registry.example.com/floodgate:0.1.0"


def test_network_policy_limits_ingress_and_egress():
    np_ = one(render(PROD), "NetworkPolicy")["spec"]
    assert set(np_["policyTypes"]) == {"Ingress", "Egress"}
    assert np_["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "pipelines"}
    assert any(p["port"] == 53 for r in np_["egress"] for p in r["ports"])
    prefect_rule = np_["egress"][-1]
    assert prefect_rule["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "prefect"}


@pytest.mark.parametrize("toggle,kind", [
    ("networkPolicy.enabled", "NetworkPolicy"),
    ("metrics.serviceMonitor.enabled", "ServiceMonitor"),
    ("metrics.prometheusRule.enabled", "PrometheusRule"),
])
def test_each_optional_object_switches(toggle, kind):
    assert len(by_kind(render(sets=[f"{toggle}=true"]), kind)) == 1
    assert not by_kind(render(sets=[f"{toggle}=false"]), kind)


def test_dashboard_configmap_is_labelled_for_grafanas_sidecar():
    docs = render(PROD)
    cm = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "floodgate"}
    dash = json.loads(cm["data"]["floodgate.json"])
    assert dash == json.loads((CHART / "dashboards" / "floodgate.json").read_text())
    assert not any(d["metadata"]["name"].endswith("-dashboard")
                   for d in by_kind(render(sets=["dashboard.enabled=false"]), "ConfigMap"))


def test_runbook_urls_take_the_base_url():
    pr = one(render(sets=["metrics.prometheusRule.enabled=true",
                          "metrics.prometheusRule.runbookBaseUrl=https://git.example/fg/blob/main/"]),
             "PrometheusRule")
    urls = [r["annotations"]["runbook_url"] for g in pr["spec"]["groups"] for r in g["rules"]]
    assert urls and all(u.startswith("https://git.example/fg/blob/main/docs/operations.md#")
                        for u in urls)


def test_several_sqlite_replicas_are_refused():
    err = render_error(sets=["replicaCount=2"])
    assert "replicaCount must be 1 with store.type=sqlite" in err
    assert "use store.type=postgresql for several replicas" in err


def test_schema_rejects_unknown_keys_and_bad_values():
    assert "additional properties" in render_error(sets=["replicas=2"]).lower()
    assert "rate" in render_error(sets=["config.rate=fast"])
    assert "scope" in render_error(sets=["auth.tokens[0].scope=admin",
                                         "auth.tokens[0].name=x",
                                         "auth.tokens[0].token=0123456789abcdefgh"])


def floodgated_flags():
    binary = os.environ.get("FLOODGATED_BIN", str(ROOT / "build/ci/service/floodgated"))
    if not os.access(binary, os.X_OK):
        pytest.fail(f"floodgated not built at {binary}")
    out = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"--([a-z][a-z0-9-]+)", out))


def test_every_configmap_variable_is_a_floodgated_flag():
    flags = floodgated_flags()
    pending: set[str] = set()  # flags the chart sets ahead of floodgated (none now)
    for values in (None, PROD, EPHEMERAL, PG_CI):
        docs = render(values)
        cm = next(d for d in by_kind(docs, "ConfigMap") if "FLOODGATE_LISTEN" in d["data"])
        names = set(cm["data"]) | {e["name"] for e in container(docs).get("env", [])}
        for name in names:
            if not name.startswith("FLOODGATE_"):
                continue
            flag = name[len("FLOODGATE_"):].lower().replace("_", "-")
            assert flag in flags or flag in pending, f"{name}: floodgated has no --{flag}"


def leaf_paths(node, prefix=""):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from leaf_paths(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix


def test_readme_documents_every_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    for path in leaf_paths(values):
        # A value is documented by its own row or by a row for the object that holds it
        # (probes, security contexts, resources: free-form Kubernetes objects).
        parts = path.split(".")
        assert any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1)), path
    for row in documented:
        cur = values
        for p in row.split("."):
            assert isinstance(cur, dict) and p in cur, f"README documents {row}, not in values"
            cur = cur[p]


def render_notes(tmp_path, *sets):
    """NOTES.txt as helm would print it: helm template skips NOTES.txt and helm install needs a
    cluster, so render a copy of the chart where it is an ordinary template."""
    import shutil

    from conftest import KUBE_VERSION, helm
    chart = tmp_path / "floodgate"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes_test.tpl").write_text(
        '{{- define "notes-test" -}}\n' + notes + '{{- end -}}\n')
    (chart / "templates" / "notes-test.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: |\n"
        '{{ include "notes-test" . | indent 4 }}\n')
    args = ["template", "fg", str(chart), "--namespace", "floodgate", "--kube-version",
            KUBE_VERSION, "--show-only", "templates/notes-test.yaml"]
    for s in sets:
        args += ["--set", s]
    return yaml.safe_load(helm(*args).stdout)["data"]["notes"]


def test_notes_say_how_to_reach_it_and_where_the_token_is(tmp_path):
    notes = render_notes(tmp_path)
    assert "kubectl -n floodgate port-forward svc/fg-floodgate 8080:8080" in notes
    assert "get secret fg-floodgate-tokens -o jsonpath='{.data.generated-token}'" in notes
    assert "a PersistentVolumeClaim" in notes and "No Prefect API key" in notes
    notes = render_notes(tmp_path / "b", "auth.insecureNoAuth=true", "persistence.enabled=false",
                         "prefect.apiKey=k")
    assert "WARNING: auth.insecureNoAuth=true" in notes and "LOST with the pod" in notes
    assert "get secret" not in notes and "No Prefect API key" not in notes
