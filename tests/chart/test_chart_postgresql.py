"""The chart's PostgreSQL mode (issue 16): several replicas sharing one database, no volume,
rolling updates, a PodDisruptionBudget, replicas spread across nodes and able to reach each
other; and the SQLite mode left as it was. helm template with chosen values, assertions on what
it renders (floodgated is not started: the flags work sharing adds are not on main yet)."""
import base64
import json
import tempfile

import pytest
import yaml

from conftest import CHART, KUBE_VERSION, by_kind, helm, one, render, render_error

EXAMPLE = str(CHART / "examples" / "values-postgresql.yaml")
PG_CI = str(CHART / "ci" / "postgresql-values.yaml")
PG = ["store.type=postgresql", "store.postgresql.existingSecret=pg"]  # the least PostgreSQL mode
SELECTOR = {"app.kubernetes.io/name": "floodgate", "app.kubernetes.io/instance": "fg"}


def deployment(docs):
    return one(docs, "Deployment")


def pod(docs):
    return deployment(docs)["spec"]["template"]["spec"]


def container(docs):
    return pod(docs)["containers"][0]


def env(docs):
    return {e["name"]: e for e in container(docs).get("env", [])}


def flags_configmap(docs):
    return next(d for d in by_kind(docs, "ConfigMap") if "FLOODGATE_LISTEN" in d["data"])


def test_example_runs_three_replicas_with_a_rolling_update_that_never_drops_one():
    dep = deployment(render(EXAMPLE))
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_rolling_update_is_configurable():
    dep = deployment(render(EXAMPLE, sets=["replication.rollingUpdate.maxUnavailable=1",
                                           "replication.rollingUpdate.maxSurge=0"]))
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    assert "maxSurge" in render_error(EXAMPLE, sets=["replication.rollingUpdate.maxSurge=lots"])


def test_example_has_a_disruption_budget_over_the_deployments_pods():
    docs = render(EXAMPLE)
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}}
    labels = deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert SELECTOR.items() <= labels.items()  # the budget counts the pods it should


@pytest.mark.parametrize("sets,expected", [
    (["podDisruptionBudget.maxUnavailable=2"], {"maxUnavailable": 2}),
    (["podDisruptionBudget.minAvailable=2"], {"minAvailable": 2}),
    (["podDisruptionBudget.minAvailable=50%"], {"minAvailable": "50%"}),
])
def test_disruption_budget_is_configurable(sets, expected):
    pdb = one(render(EXAMPLE, sets=sets), "PodDisruptionBudget")
    assert {k: v for k, v in pdb["spec"].items() if k != "selector"} == expected


@pytest.mark.parametrize("values,sets", [
    (EXAMPLE, ["podDisruptionBudget.enabled=false"]),
    (EXAMPLE, ["replicaCount=1"]),  # one replica: a budget would only block node drains
    (None, []),  # SQLite
    (None, ["podDisruptionBudget.enabled=true"]),
])
def test_no_disruption_budget_when_off_with_one_replica_or_with_sqlite(values, sets):
    assert not by_kind(render(values, sets=sets), "PodDisruptionBudget")


@pytest.mark.parametrize("values", [EXAMPLE, PG_CI])
def test_postgresql_mode_has_no_volume_for_the_store(values):
    # persistence.enabled stays true (the default) in both files: PostgreSQL ignores it.
    docs = render(values, sets=["persistence.enabled=true"])
    assert not by_kind(docs, "PersistentVolumeClaim")
    spec = pod(docs)
    assert "data" not in {v["name"] for v in spec["volumes"]}
    mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert "/var/lib/floodgate" not in mounts and "/tmp" in mounts


def test_database_url_comes_from_your_secret():
    docs = render(EXAMPLE)
    assert env(docs)["FLOODGATE_DB"]["valueFrom"] == {
        "secretKeyRef": {"name": "floodgate-postgresql", "key": "url"}}
    assert "FLOODGATE_DB" not in flags_configmap(docs)["data"]
    assert not any(s["metadata"]["name"].endswith("-postgresql") for s in by_kind(docs, "Secret"))


def test_database_url_in_values_goes_to_a_secret_the_chart_makes_and_nowhere_else():
    docs = render(PG_CI)
    ref = env(docs)["FLOODGATE_DB"]["valueFrom"]["secretKeyRef"]
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    assert ref == {"name": "fg-floodgate-postgresql", "key": "url"}
    url = "postgresql://floodgate:ci-password-123@postgresql.db:5432/floodgate?sslmode=require"
    assert base64.b64decode(secrets[ref["name"]]["data"]["url"]).decode() == url
    # The password appears in no other object (ConfigMaps, the Deployment's env, args, annotations).
    others = [d for d in docs if d["metadata"]["name"] != ref["name"]]
    assert "ci-password-123" not in json.dumps(others)
    c = container(docs)
    assert "args" not in c and "command" not in c
    # A new URL rolls the pods (the Secret's checksum).
    def checksum(url):
        dep = deployment(render(PG_CI, sets=[f"store.postgresql.url={url}"]))
        return dep["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
    assert checksum("postgresql://a@h/db") != checksum("postgresql://b@h/db")


def test_existing_secret_wins_over_url():
    docs = render(PG_CI, sets=["store.postgresql.existingSecret=mine",
                               "store.postgresql.existingSecretKey=dsn"])
    assert env(docs)["FLOODGATE_DB"]["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "dsn"}
    assert "ci-password-123" not in json.dumps(docs)


@pytest.mark.parametrize("port", [8080, 9000])
def test_each_replica_advertises_its_pod_address(port):
    docs = render(EXAMPLE, sets=[f"service.port={port}"])
    c = container(docs)
    names = [e["name"] for e in c["env"]]
    e = env(docs)
    assert e["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert e["FLOODGATE_ADVERTISE_URL"]["value"] == f"http://$(POD_IP):{port}"
    # $(POD_IP) expands only variables defined before it.
    assert names.index("POD_IP") < names.index("FLOODGATE_ADVERTISE_URL")
    assert c["ports"][0]["containerPort"] == port
    assert flags_configmap(docs)["data"]["FLOODGATE_LISTEN"] == f"0.0.0.0:{port}"
    e = env(render(EXAMPLE, sets=[f"service.port={port}", "replication.podIPv6=true"]))
    assert e["FLOODGATE_ADVERTISE_URL"]["value"] == f"http://[$(POD_IP)]:{port}"


def test_lease_ttl_is_left_to_floodgated_unless_set():
    assert "FLOODGATE_LEASE_TTL_S" not in flags_configmap(render(EXAMPLE))["data"]
    assert flags_configmap(render(PG_CI))["data"]["FLOODGATE_LEASE_TTL_S"] == "20"
    assert flags_configmap(render(EXAMPLE, sets=["replication.leaseTtlSeconds=7"]))[
        "data"]["FLOODGATE_LEASE_TTL_S"] == "7"


def test_probes_and_grace_period_are_those_of_sqlite_mode():
    docs = render(EXAMPLE, sets=["config.drainTimeoutSeconds=90"])
    c = container(docs)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert flags_configmap(docs)["data"]["FLOODGATE_DRAIN_TIMEOUT"] == "90"
    # The drain, then giving the leases up, fits in the grace period.
    assert pod(docs)["terminationGracePeriodSeconds"] == 90 + 15


def test_replicas_prefer_different_nodes_by_default():
    anti = pod(render(EXAMPLE))["affinity"]["podAntiAffinity"]
    assert anti == {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": SELECTOR}}}]}


def test_anti_affinity_can_be_hard_or_off_and_yields_to_yours():
    anti = pod(render(PG_CI))["affinity"]["podAntiAffinity"]
    assert anti == {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": SELECTOR}}]}
    assert "affinity" not in pod(render(EXAMPLE, sets=["replication.podAntiAffinity.type=none"]))
    mine = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "rack", "labelSelector": {"matchLabels": {"app": "x"}}}]},
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}}
    # --set cannot carry a nested object comfortably: pass it as a second values file.
    docs = render_with(EXAMPLE, {"affinity": mine})
    assert pod(docs)["affinity"] == mine
    aff = pod(render_with(EXAMPLE, {"affinity": {"nodeAffinity": mine["nodeAffinity"]}}))["affinity"]
    assert aff["nodeAffinity"] == mine["nodeAffinity"]  # yours kept, the preference added
    assert "preferredDuringSchedulingIgnoredDuringExecution" in aff["podAntiAffinity"]


def render_with(values_file, extra):
    """Renders with values_file, then the values in `extra` over it."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(extra, f)
        f.flush()
        out = helm("template", "fg", str(CHART), "--namespace", "floodgate", "--kube-version",
                   KUBE_VERSION, "-f", values_file, "-f", f.name).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_network_policy_lets_replicas_reach_each_other_and_postgresql():
    np_ = one(render(PG_CI), "NetworkPolicy")["spec"]
    # Ingress: the clients you list, and the other replicas (forwarded requests).
    froms = [r["from"] for r in np_["ingress"]]
    assert [{"podSelector": {"matchLabels": SELECTOR}}] in froms
    assert any(f[0].get("namespaceSelector") for f in froms)
    egress = np_["egress"]
    pg_rule = next(r for r in egress if {"port": 5432, "protocol": "TCP"} in r["ports"])
    assert {"port": 6432, "protocol": "TCP"} in pg_rule["ports"] and "to" not in pg_rule
    peer_rule = next(r for r in egress if r.get("to") == [{"podSelector": {"matchLabels": SELECTOR}}])
    assert peer_rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    np_ = one(render(EXAMPLE), "NetworkPolicy")["spec"]
    pg_rule = next(r for r in np_["egress"] if {"port": 5432, "protocol": "TCP"} in r["ports"])
    assert pg_rule["to"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "db"}}}]


def test_sqlite_mode_is_unchanged():
    docs = render()
    dep = deployment(docs)
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert not by_kind(docs, "PodDisruptionBudget")
    e = env(docs)
    assert "POD_IP" not in e and "FLOODGATE_ADVERTISE_URL" not in e and "FLOODGATE_DB" not in e
    data = flags_configmap(docs)["data"]
    assert data["FLOODGATE_DB"] == "sqlite:///var/lib/floodgate/floodgate.db"
    assert "FLOODGATE_LEASE_TTL_S" not in data
    assert "affinity" not in pod(docs)
    one(docs, "PersistentVolumeClaim")
    egress = one(docs, "NetworkPolicy")["spec"]["egress"]
    assert not any({"port": 5432, "protocol": "TCP"} in r["ports"] for r in egress)
    # Replication values are ignored with SQLite.
    docs = render(sets=["replication.leaseTtlSeconds=20", "replication.podAntiAffinity.type=hard"])
    assert "FLOODGATE_LEASE_TTL_S" not in flags_configmap(docs)["data"]
    assert "affinity" not in pod(docs)


def test_sqlite_refuses_two_replicas():
    err = render_error(sets=["replicaCount=2"])
    assert "replicaCount must be 1 with store.type=sqlite" in err


def test_postgresql_without_a_url_is_refused_with_what_to_set():
    err = render_error(sets=["store.type=postgresql"])
    assert "store.type=postgresql needs the database URL" in err
    assert "store.postgresql.existingSecret" in err and "store.postgresql.url" in err


def test_a_url_that_is_not_postgresql_is_refused_without_echoing_it():
    err = render_error(sets=["store.type=postgresql", "store.postgresql.url=mysql://u:hunter2@h/db"])
    assert "store.postgresql.url must start with postgresql://" in err
    assert "hunter2" not in err


def test_one_postgresql_replica_renders_without_a_budget():
    docs = render(sets=PG)
    assert deployment(docs)["spec"]["replicas"] == 1
    assert deployment(docs)["spec"]["strategy"]["type"] == "RollingUpdate"
    assert not by_kind(docs, "PodDisruptionBudget")


def test_schema_rejects_unknown_replication_values():
    assert "additional properties" in render_error(
        EXAMPLE, sets=["replication.leaseTTL=5"]).lower()
    assert "podAntiAffinity" in render_error(EXAMPLE, sets=["replication.podAntiAffinity.type=maybe"])
    # floodgated takes --lease-ttl-s from 2 to 3600.
    assert "leaseTtlSeconds" in render_error(EXAMPLE, sets=["replication.leaseTtlSeconds=1"])
    assert "leaseTtlSeconds" in render_error(EXAMPLE, sets=["replication.leaseTtlSeconds=3601"])
    assert "maxUnavailable" in render_error(EXAMPLE, sets=["podDisruptionBudget.maxUnavailable=-1"])


def test_notes_describe_the_postgresql_mode(tmp_path):
    from test_chart_units import render_notes
    notes = render_notes(tmp_path, "replicaCount=3", *PG)
    assert "Store: PostgreSQL (URL from Secret pg, key url); 3 replica(s)" in notes
    assert "RollingUpdate, a PodDisruptionBudget; no volume" in notes
    assert "installed as fg-floodgate in floodgate.\n\nStore:" in notes
    notes = render_notes(tmp_path / "b")
    assert "\n\nStore: SQLite on a PersistentVolumeClaim; one replica, strategy Recreate" in notes
