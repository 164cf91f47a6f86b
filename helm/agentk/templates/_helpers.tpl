{{- define "agentk.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentk.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "agentk.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentk.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agentk.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "agentk.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "agentk.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agentk.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the agent token: an existing one, or the chart's. */}}
{{- define "agentk.secretName" -}}
{{- if .Values.config.secretName }}
{{- .Values.config.secretName }}
{{- else }}
{{- if not .Values.config.token }}
{{- fail "set config.token (the agent token) or config.secretName (an existing Secret with the key \"token\")" }}
{{- end }}
{{- printf "%s-token" (include "agentk.fullname" .) }}
{{- end }}
{{- end }}

{{- define "agentk.kasAddress" -}}
{{- $address := required "config.kasAddress is required: kas's agent endpoint, e.g. wss://kas.example.com/" .Values.config.kasAddress }}
{{- if not (regexMatch "^wss?://" $address) }}
{{- fail (printf "config.kasAddress must be a ws:// or wss:// URL, got %q" $address) }}
{{- end }}
{{- $address }}
{{- end }}

{{- define "agentk.pdbApiVersion" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end }}
{{- end }}
