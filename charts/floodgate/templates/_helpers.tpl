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

{{/* Refuse what the chart cannot run: several SQLite replicas, PostgreSQL (not built yet). */}}
{{- define "floodgate.validate" -}}
{{- if eq .Values.store.type "postgresql" -}}
{{- fail "store.type=postgresql: floodgate's PostgreSQL store (several replicas sharing one database) is not built yet; the values are prepared for it, but this chart only runs store.type=sqlite with replicaCount=1" -}}
{{- end -}}
{{- if and (eq .Values.store.type "sqlite") (ne (int .Values.replicaCount) 1) -}}
{{- fail "replicaCount must be 1 with store.type=sqlite: the SQLite store belongs to one process" -}}
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
