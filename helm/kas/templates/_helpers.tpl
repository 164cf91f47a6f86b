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
{{/* True (non-empty) when Redis is configured. */}}
{{- define "kas.redis" -}}
{{- if or .Values.redis.address .Values.redis.sentinel.masterName }}true{{ end }}
{{- end }}

{{- define "kas.config" -}}
{{- if and (gt (int .Values.replicas) 1) (not (include "kas.redis" .)) }}
{{- fail (printf "replicas is %v: several kas replicas need redis.address (or redis.sentinel), so that a request reaches its agent through any replica" .Values.replicas) }}
{{- end }}
{{- if lt (int .Values.config.shutdownDelaySeconds) 0 }}
{{- fail (printf "config.shutdownDelaySeconds must be 0 or more, got %v" .Values.config.shutdownDelaySeconds) }}
{{- end }}
{{- /* After SIGTERM kas serves for the delay, then drains for up to the drain grace: the kubelet must wait for both. */}}
{{- if le (int .Values.terminationGracePeriodSeconds) (add (int .Values.config.drainGraceSeconds) (int .Values.config.shutdownDelaySeconds)) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be above config.drainGraceSeconds (%v) plus config.shutdownDelaySeconds (%v), or the kubelet kills kas while it drains" .Values.terminationGracePeriodSeconds .Values.config.drainGraceSeconds .Values.config.shutdownDelaySeconds) }}
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
  "shutdown_delay" (printf "%ds" (int .Values.config.shutdownDelaySeconds))
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
{{- if include "kas.redis" . }}
{{- $redis := dict "key_prefix" .Values.redis.keyPrefix "tls" (dict "enabled" .Values.redis.tls) }}
{{- if .Values.redis.address }}
{{- $_ := set $redis "server" (dict "address" .Values.redis.address) }}
{{- else }}
{{- $_ := set $redis "sentinel" (dict "master_name" .Values.redis.sentinel.masterName "addresses" .Values.redis.sentinel.addresses) }}
{{- end }}
{{- if .Values.redis.passwordSecret.name }}
{{- $_ := set $redis "password_file" "/etc/kas/redis/password" }}
{{- end }}
{{- if and (not .Values.standalone.existingSecret) (not .Values.privateApi.secret) }}
{{- fail "privateApi.secret is required with redis: base64 of 32 random bytes shared by the replicas (head -c 32 /dev/urandom | base64)" }}
{{- end }}
{{- $_ := set $config "redis" $redis }}
{{- $_ := set $config "private_api" (dict "listen" (dict "address" "0.0.0.0:8155" "authentication_secret_file" "/etc/kas/secrets/private-api.secret")) }}
{{- end }}
{{- toYaml (mergeOverwrite $config (deepCopy .Values.config.extra)) }}
{{- end }}
