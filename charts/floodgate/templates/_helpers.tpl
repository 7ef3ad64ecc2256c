{{- define "floodgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "floodgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "floodgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "floodgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "floodgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "floodgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "floodgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "floodgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the Prefect API key, or "" when there is none. */}}
{{- define "floodgate.prefectSecret" -}}
{{- if .Values.prefect.existingSecret -}}
{{- .Values.prefect.existingSecret -}}
{{- else if .Values.prefect.apiKey -}}
{{- printf "%s-prefect" (include "floodgate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the API tokens file, or "" when there is none. */}}
{{- define "floodgate.tokensSecret" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else if not .Values.auth.insecureNoAuth -}}
{{- printf "%s-tokens" (include "floodgate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* "true" when the store is PostgreSQL (several replicas, no volume), else "". */}}
{{- define "floodgate.postgresql" -}}
{{- if eq .Values.store.type "postgresql" -}}true{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the PostgreSQL URL (PostgreSQL mode). */}}
{{- define "floodgate.postgresqlSecret" -}}
{{- .Values.store.postgresql.existingSecret | default (printf "%s-postgresql" (include "floodgate.fullname" .)) -}}
{{- end -}}

{{/* Refuse what the chart cannot run: several SQLite replicas, PostgreSQL without a URL. */}}
{{- define "floodgate.validate" -}}
{{- if and (eq .Values.store.type "sqlite") (ne (int .Values.replicaCount) 1) -}}
{{- fail "replicaCount must be 1 with store.type=sqlite: the SQLite store belongs to one process; use store.type=postgresql for several replicas" -}}
{{- end -}}
{{- if and (include "floodgate.postgresql" .) (not .Values.store.postgresql.url) (not .Values.store.postgresql.existingSecret) -}}
{{- fail "store.type=postgresql needs the database URL: set store.postgresql.existingSecret (a Secret of yours holding the postgresql:// URL under store.postgresql.existingSecretKey) or store.postgresql.url" -}}
{{- end -}}
{{- if and (include "floodgate.postgresql" .) .Values.store.postgresql.url (not (regexMatch "^postgres(ql)?://" .Values.store.postgresql.url)) -}}
{{- fail "store.postgresql.url must start with postgresql:// (or postgres://)" -}}
{{- end -}}
{{- end -}}

{{/* With no tokens given: one write token, made once and kept across upgrades (the Secret's
     "generated-token" key); the same within one render, so the checksum annotation matches. */}}
{{- define "floodgate.generatedToken" -}}
{{- if not (hasKey .Values.auth "generatedToken") -}}
{{- $old := lookup "v1" "Secret" .Release.Namespace (printf "%s-tokens" (include "floodgate.fullname" .)) -}}
{{- if and $old $old.data (hasKey $old.data "generated-token") -}}
{{- $_ := set .Values.auth "generatedToken" (index $old.data "generated-token" | b64dec) -}}
{{- else -}}
{{- $_ := set .Values.auth "generatedToken" (randAlphaNum 40) -}}
{{- end -}}
{{- end -}}
{{- .Values.auth.generatedToken -}}
{{- end -}}

{{/* The pod's affinity: .Values.affinity, plus on PostgreSQL a podAntiAffinity that spreads the
     replicas across replication.podAntiAffinity.topologyKey (unless affinity has its own), so
     one node going down takes at most one replica. */}}
{{- define "floodgate.affinity" -}}
{{- $affinity := deepCopy (.Values.affinity | default dict) -}}
{{- $anti := .Values.replication.podAntiAffinity -}}
{{- if and (include "floodgate.postgresql" .) (ne $anti.type "none") (not (hasKey $affinity "podAntiAffinity")) -}}
{{- $term := dict "topologyKey" $anti.topologyKey "labelSelector" (dict "matchLabels" (include "floodgate.selectorLabels" . | fromYaml)) -}}
{{- if eq $anti.type "hard" -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) -}}
{{- else -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" (int $anti.weight) "podAffinityTerm" $term))) -}}
{{- end -}}
{{- end -}}
{{- if $affinity -}}
{{- toYaml $affinity -}}
{{- end -}}
{{- end -}}
