{{- define "kas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kas.fullname" -}}
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

{{- define "kas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kas.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kas.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: server
{{- end }}

{{- define "kas.pdbApiVersion" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end }}
{{- end }}

{{- define "kas.secretName" -}}
{{- default (printf "%s-tokens" (include "kas.fullname" .)) .Values.standalone.existingSecret }}
{{- end }}

{{/*
kas's configuration file (docs/configuration.md), built from the values. Listeners bind every
interface in the pod on kas's default ports; the Service and the probes use those ports.
*/}}
{{- define "kas.config" -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.config.drainGraceSeconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be above config.drainGraceSeconds (%v), or the kubelet kills kas while it drains" .Values.terminationGracePeriodSeconds .Values.config.drainGraceSeconds) }}
{{- end }}
{{- $prefix := .Values.kubernetesApi.urlPathPrefix }}
{{- if not (and (hasPrefix "/" $prefix) (hasSuffix "/" $prefix)) }}
{{- fail (printf "kubernetesApi.urlPathPrefix must start and end with '/', got %q" $prefix) }}
{{- end }}
{{- $tls := dict }}
{{- if .Values.tls.enabled }}
{{- $_ := required "tls.secretName is required when tls.enabled is true" .Values.tls.secretName }}
{{- $tls = dict "certificate_file" "/etc/kas/tls/tls.crt" "key_file" "/etc/kas/tls/tls.key" }}
{{- end }}
{{- $agentIds := list }}
{{- $agents := list }}
{{- range .Values.standalone.agents }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" (toString .name)) }}
{{- fail (printf "standalone.agents: name %q is not a DNS label" (toString .name)) }}
{{- end }}
{{- $agentIds = append $agentIds (int .id) }}
{{- $agents = append $agents (dict "id" (int .id) "name" .name "token_file" (printf "/etc/kas/secrets/agent-%d.token" (int .id))) }}
{{- end }}
{{- $proxyTokens := list }}
{{- range .Values.standalone.proxyTokens }}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+$" (toString .name)) }}
{{- fail (printf "standalone.proxyTokens: name %q may only hold letters, digits, '-', '_' and '.'" (toString .name)) }}
{{- end }}
{{- $ids := list }}
{{- range .agents }}
{{- if not (has (int .) $agentIds) }}
{{- fail (printf "standalone.proxyTokens: agent %v is not in standalone.agents" .) }}
{{- end }}
{{- $ids = append $ids (int .) }}
{{- end }}
{{- $proxyTokens = append $proxyTokens (dict "token_file" (printf "/etc/kas/secrets/proxy-%s.token" .name) "agents" $ids "access_as" (default (dict "agent" (dict)) .accessAs)) }}
{{- end }}
{{- $config := dict
  "agent" (dict
    "listen" (merge (dict "address" "0.0.0.0:8150" "max_connection_age" .Values.config.maxConnectionAge) $tls)
    "tunnel" (dict "drain_grace" (printf "%ds" (int .Values.config.drainGraceSeconds)))
    "kubernetes_api" (dict
      "listen" (merge (dict "address" "0.0.0.0:8154") $tls)
      "url_path_prefix" $prefix
      "agent_wait_timeout" .Values.config.agentWaitTimeout))
  "observability" (dict
    "listen" (dict "address" "0.0.0.0:8151")
    "logging" (dict "level" .Values.config.logLevel))
  "standalone" (dict "agents" $agents "proxy_tokens" $proxyTokens) }}
{{- if .Values.redis.address }}
{{- $_ := set $config "redis" (dict "server" (dict "address" .Values.redis.address) "key_prefix" .Values.redis.keyPrefix) }}
{{- end }}
{{- toYaml (mergeOverwrite $config (deepCopy .Values.config.extra)) }}
{{- end }}
