"""Every pod the chart renders runs non-root, read-only, without capabilities, under
seccomp RuntimeDefault, without a service account token."""
import pytest

from conftest import VALUES_FILES, render, values_id

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


def pod_specs(docs):
    for d in docs:
        if d["kind"] in WORKLOADS:
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]


@pytest.mark.parametrize("values", VALUES_FILES, ids=values_id)
def test_pods_are_locked_down(values):
    specs = list(pod_specs(render(values)))
    assert specs, "no workload rendered"
    for name, spec in specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, name
        assert psc["runAsUser"] != 0 and psc["runAsGroup"] != 0, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        containers = spec["containers"] + spec.get("initContainers", [])
        for c in containers:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc.get("privileged", False) is False, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert not sc["capabilities"].get("add"), c["name"]
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
            assert "limits" in c["resources"] and "requests" in c["resources"], c["name"]
            # A read-only root needs somewhere to write: /tmp, and the store's volume with
            # SQLite (PostgreSQL needs none).
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert "/tmp" in mounts
            env = {e["name"] for e in c.get("env", [])}
            assert ("/var/lib/floodgate" in mounts) == ("FLOODGATE_DB" not in env), c["name"]

