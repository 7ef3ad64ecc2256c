"""Proof that the chart's tests can fail: breaks the chart's templates one way at a time (the
PostgreSQL mode and the SQLite mode beside it) and runs the chart's unit tests against each
break; every break must fail at least one test. Not part of the test command (about 35 runs of
the unit tests, several minutes); run it after changing the templates or those tests:

    HELM_BIN=... FLOODGATED_BIN=... .venv-chart/bin/python tests/chart/mutate_chart.py [NAME...]

Each template is restored after its run (also on Ctrl-C). Exits 1 when a break went unnoticed.
"PDB with sqlite" is expected to be missed: SQLite is refused with more than one replica, and
the budget needs more than one, so the template's own SQLite check cannot be seen from outside.
"""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
T = ROOT / "charts" / "floodgate" / "templates"
EQUIVALENT = {"PDB with sqlite"}
M = [
 ("replicas from values ignored", "deployment.yaml", "replicas: {{ .Values.replicaCount }}", "replicas: 1"),
 ("Recreate in pg mode", "deployment.yaml", "type: RollingUpdate\n", "type: Recreate\n"),
 ("maxUnavailable 1", "deployment.yaml", "maxUnavailable: {{ .Values.replication.rollingUpdate.maxUnavailable }}", "maxUnavailable: 1"),
 ("maxSurge fixed", "deployment.yaml", "maxSurge: {{ .Values.replication.rollingUpdate.maxSurge }}", "maxSurge: 1"),
 ("RollingUpdate with sqlite", "deployment.yaml", "    # The SQLite store belongs to one process: the old pod must be gone before the new one opens it.\n    type: Recreate", "    type: RollingUpdate"),
 ("no PDB", "pdb.yaml", "kind: PodDisruptionBudget", "kind: PodDisruptionBudgetX"),
 ("PDB with sqlite", "pdb.yaml", '{{- if and (include "floodgate.postgresql" .) (gt', '{{- if and true (gt'),
 ("PDB with 1 replica", "pdb.yaml", "(gt (int .Values.replicaCount) 1)", "(gt (int .Values.replicaCount) 0)"),
 ("PDB minAvailable ignored", "pdb.yaml", 'ne (toString .Values.podDisruptionBudget.minAvailable) ""', "false"),
 ("PVC in pg mode", "pvc.yaml", '(not (include "floodgate.postgresql" .))', "true"),
 ("data volume in pg mode", "deployment.yaml", "        {{- if not $pg }}\n        - name: data", "        {{- if true }}\n        - name: data"),
 ("data mount in pg mode", "deployment.yaml", "            {{- if not $pg }}\n            - name: data", "            {{- if true }}\n            - name: data"),
 ("DB as plain value", "deployment.yaml", "            - name: FLOODGATE_DB\n              valueFrom:\n                secretKeyRef:\n                  name: {{ include \"floodgate.postgresqlSecret\" . }}\n                  key: {{ .Values.store.postgresql.existingSecretKey }}", "            - name: FLOODGATE_DB\n              value: {{ .Values.store.postgresql.url | quote }}"),
 ("DB in configmap in pg", "configmap.yaml", "  {{- else }}\n  FLOODGATE_DB:", "  FLOODGATE_DB: {{ .Values.store.postgresql.url | quote }}\n  {{- else }}\n  FLOODGATE_DB:"),
 ("pg secret not made", "secret.yaml", "kind: Secret\nmetadata:\n  name: {{ include \"floodgate.postgresqlSecret\" . }}", "kind: ConfigMap\nmetadata:\n  name: {{ include \"floodgate.postgresqlSecret\" . }}"),
 ("existingSecret does not win", "_helpers.tpl", '{{- .Values.store.postgresql.existingSecret | default (printf "%s-postgresql"', '{{- "" | default (printf "%s-postgresql"'),
 ("advertise without POD_IP", "deployment.yaml", '"http://$(POD_IP):%d"', '"http://localhost:%d"'),
 ("POD_IP from hostIP", "deployment.yaml", "fieldPath: status.podIP", "fieldPath: status.hostIP"),
 ("advertise before POD_IP", "deployment.yaml", "            - name: POD_IP\n              valueFrom:\n                fieldRef:\n                  fieldPath: status.podIP\n", ""),
 ("advertise in sqlite", "deployment.yaml", "          env:\n            {{- if $pg }}", "          env:\n            {{- if true }}"),
 ("ipv6 ignored", "deployment.yaml", '(.Values.replication.podIPv6 | default false)', 'false'),
 ("lease ttl always", "configmap.yaml", "{{- with .Values.replication.leaseTtlSeconds | toString }}", "{{- with .Values.replication.leaseTtlSeconds | toString | default \"15\" }}"),
 ("no url validation", "_helpers.tpl", "{{- fail \"store.type=postgresql needs the database URL", "{{- printf \"store.type=postgresql needs the database URL"),
 ("scheme not validated", "_helpers.tpl", '(not (regexMatch "^postgres(ql)?://" .Values.store.postgresql.url))', 'false'),
 ("scheme error echoes url", "_helpers.tpl", '"store.postgresql.url must start with postgresql:// (or postgres://)"', '(printf "store.postgresql.url must start with postgresql:// (or postgres://), not %s" .Values.store.postgresql.url)'),
 ("sqlite allows 2", "_helpers.tpl", '(ne (int .Values.replicaCount) 1)', 'false'),
 ("no anti-affinity", "_helpers.tpl", '(ne $anti.type "none")', 'false'),
 ("hard ignored", "_helpers.tpl", '{{- if eq $anti.type "hard" -}}', '{{- if false -}}'),
 ("anti-affinity in sqlite", "_helpers.tpl", '{{- if and (include "floodgate.postgresql" .) (ne $anti.type "none")', '{{- if and true (ne $anti.type "none")'),
 ("user anti-affinity overwritten", "_helpers.tpl", '(not (hasKey $affinity "podAntiAffinity"))', 'true'),
 ("np: no pg egress", "networkpolicy.yaml", "    # The shared store.\n    - ports:", "    # The shared store.\n    - to: []\n      ports:\n        - port: 1\n          protocol: TCP\n    - ports:\n        - port: 1\n          protocol: TCP\n    - portz:"),
 ("np: no peer egress", "networkpolicy.yaml", "        - port: {{ .Values.service.port }}\n", "        - port: 9\n"),
 ("np: no peer ingress", "networkpolicy.yaml", '{{- if and (include "floodgate.postgresql" .) .Values.networkPolicy.ingressFrom }}', '{{- if false }}'),
 ("notes: no pg", "NOTES.txt", "Store: {{ if include \"floodgate.postgresql\" . -}}", "Store: {{ if false -}}"),
 ("grace without drain", "deployment.yaml", "terminationGracePeriodSeconds: {{ add (int .Values.config.drainTimeoutSeconds) (int .Values.terminationGraceExtraSeconds) }}", "terminationGracePeriodSeconds: 75"),
]
only = sys.argv[1:]
bad = []
for name, f, old, new in M:
    if only and name not in only:
        continue
    p = T / f
    orig = p.read_text()
    assert orig.count(old) == 1, (name, orig.count(old))
    p.write_text(orig.replace(old, new))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "tests/chart/test_chart_postgresql.py",
                            "tests/chart/test_chart_units.py", "tests/chart/test_security.py",
                            "-q", "-x", "-p", "no:cacheprovider"],
                           capture_output=True, text=True, cwd=ROOT)
    finally:
        p.write_text(orig)
    failed = [l for l in r.stdout.splitlines() if l.startswith("FAILED")]
    print(("caught  " if r.returncode else "MISSED  ") + name
          + ("  <- " + failed[0][:110] if failed else ""), flush=True)
    if r.returncode == 0 and name not in EQUIVALENT:
        bad.append(name)
print("missed (not expected):", bad)
sys.exit(1 if bad else 0)
