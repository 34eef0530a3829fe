{{/* Names and labels. */}}

{{- define "callgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "callgate.fullname" -}}
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

{{- define "callgate.livekitName" -}}
{{- printf "%s-livekit" (include "callgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "callgate.egressName" -}}
{{- printf "%s-egress" (include "callgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "callgate.recordingsClaim" -}}
{{- default (printf "%s-recordings" (include "callgate.fullname" .) | trunc 63 | trimSuffix "-") .Values.recordings.existingClaim }}
{{- end }}

{{/* Where egress writes: RECORDING_EGRESS_DIR, or RECORDING_DIR (the same volume in both pods). */}}
{{- define "callgate.egressDir" -}}
{{- default .Values.config.RECORDING_DIR .Values.config.RECORDING_EGRESS_DIR }}
{{- end }}

{{/* LiveKit's Redis (LiveKit and egress talk over it), without its password, as JSON. */}}
{{- define "callgate.livekitRedis" -}}
{{- $redis := dict "address" .Values.redis.address "db" (int .Values.redis.db) }}
{{- if .Values.redis.cluster }}
{{- $redis = dict "cluster_addresses" (include "callgate.redisNodes" . | fromJsonArray) }}
{{- end }}
{{- if .Values.redis.username }}
{{- $_ := set $redis "username" .Values.redis.username }}
{{- end }}
{{- toJson $redis }}
{{- end }}

{{- define "callgate.coturnName" -}}
{{- printf "%s-coturn" (include "callgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "callgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: callgate
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "callgate") */}}
{{- define "callgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "callgate.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "callgate.componentLabels" -}}
{{ include "callgate.labels" .ctx }}
{{ include "callgate.selectorLabels" . }}
{{- end }}

{{- define "callgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "callgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret with JWT_SECRET, LIVEKIT_API_SECRET, TURN_SECRET, ... */}}
{{- define "callgate.secretName" -}}
{{- default (include "callgate.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "callgate.postgresSecretName" -}}
{{- default (include "callgate.secretName" .) .Values.postgres.existingSecret }}
{{- end }}

{{- define "callgate.redisSecretName" -}}
{{- default (include "callgate.secretName" .) .Values.redis.existingSecret }}
{{- end }}

{{/* Whether Redis has a password (somewhere the pods can read it). */}}
{{- define "callgate.redisHasPassword" -}}
{{- if or .Values.redis.password .Values.redis.existingSecret }}true{{ end }}
{{- end }}

{{/* The callgate Service's in-cluster address. */}}
{{- define "callgate.serviceHost" -}}
{{- printf "%s.%s.svc" (include "callgate.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "callgate.livekitApiUrl" -}}
{{- if .Values.livekit.apiUrl }}
{{- .Values.livekit.apiUrl }}
{{- else }}
{{- printf "http://%s.%s.svc:%d" (include "callgate.livekitName" .) .Release.Namespace (int .Values.livekit.port) }}
{{- end }}
{{- end }}

{{/* An env entry read from a Secret: (dict "name" "VAR" "secret" "s" "key" "k" "optional" bool) */}}
{{- define "callgate.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/* The shared secrets' env entries (callgate, LiveKit and Coturn read them). */}}
{{- define "callgate.turnSecretEnv" -}}
{{ include "callgate.secretEnv" (dict "name" "TURN_SECRET" "secret" (include "callgate.secretName" .) "key" "TURN_SECRET") }}
{{- end }}

{{- define "callgate.redisPasswordEnv" -}}
{{ include "callgate.secretEnv" (dict "name" "REDIS_PASSWORD" "secret" (include "callgate.redisSecretName" .) "key" .Values.redis.existingSecretKey) }}
{{- end }}

{{/* callgate's REDIS_URL; $(REDIS_PASSWORD) is expanded by Kubernetes from the env entry before it. */}}
{{- define "callgate.redisUrl" -}}
{{- $auth := "" }}
{{- if include "callgate.redisHasPassword" . }}
{{- $auth = printf "%s:$(REDIS_PASSWORD)@" .Values.redis.username }}
{{- else if .Values.redis.username }}
{{- $auth = printf "%s@" .Values.redis.username }}
{{- end }}
{{- if .Values.redis.cluster }}
{{- $urls := list }}
{{- range $node := include "callgate.redisNodes" . | fromJsonArray }}
{{- $urls = append $urls (printf "redis://%s%s" $auth $node) }}
{{- end }}
{{- join "," $urls }}
{{- else }}
{{- printf "redis://%s%s/%d" $auth .Values.redis.address (int .Values.redis.db) }}
{{- end }}
{{- end }}

{{/* The seed nodes of a Redis Cluster (redis.address, comma-separated), as a JSON list. */}}
{{- define "callgate.redisNodes" -}}
{{- $nodes := list }}
{{- range $node := splitList "," .Values.redis.address }}
{{- if trim $node }}
{{- $nodes = append $nodes (trim $node) }}
{{- end }}
{{- end }}
{{- toJson $nodes }}
{{- end }}

{{/* Refusals of values that cannot work. */}}
{{- define "callgate.validate" -}}
{{- $s := .Values.shutdown }}
{{- if lt (int $s.terminationGracePeriodSeconds) (add (int $s.preStopSeconds) (int $s.drainSeconds) | int) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must be at least preStopSeconds + drainSeconds (%d + %d): Kubernetes would kill callgate before it has drained" (int $s.terminationGracePeriodSeconds) (int $s.preStopSeconds) (int $s.drainSeconds)) }}
{{- end }}
{{- if and .Values.redis.cluster (ne (int .Values.redis.db) 0) }}
{{- fail "redis.db must be 0 with redis.cluster: a Redis Cluster has one database" }}
{{- end }}
{{- /* BEGIN set by the chart: generated from src/config/schema.rs by `cargo run -- config-docs` */}}
{{- range $name := list "PORT" "ADMIN_PORT" "LOG_FORMAT" "CALLGATE_DEV" "DATABASE_URL" "REDIS_URL" "REDIS_CLUSTER" "JWT_SECRET" "LIVEKIT_API_URL" "LIVEKIT_API_SECRET" "TURN_SECRET" "APP_WEBHOOK_SECRET" "CALL_AUTHZ_SECRET" "S3_SECRET_ACCESS_KEY" "REDIS_PASSWORD" }}
{{- /* END set by the chart */}}
{{- if hasKey $.Values.config $name }}
{{- fail (printf "config.%s: set by the chart (ports, livekit.apiUrl) or a secret (secrets, postgres, redis), not in config" $name) }}
{{- end }}
{{- end }}
{{- if eq (int .Values.ports.http) (int .Values.ports.admin) }}
{{- fail "ports.http and ports.admin must differ" }}
{{- end }}
{{- if and .Values.coturn.enabled .Values.livekit.enabled (not (or (lt (int .Values.coturn.maxPort) (int .Values.livekit.rtc.portRangeStart)) (gt (int .Values.coturn.minPort) (int .Values.livekit.rtc.portRangeEnd)))) }}
{{- fail "coturn.minPort..maxPort overlaps livekit.rtc.portRangeStart..portRangeEnd: both use host networking" }}
{{- end }}
{{- if and (not .Values.livekit.enabled) (not .Values.livekit.apiUrl) }}
{{- fail "livekit.enabled=false needs livekit.apiUrl (your LiveKit's API URL)" }}
{{- end }}
{{- if and .Values.egress.enabled (not .Values.livekit.enabled) (not .Values.egress.wsUrl) }}
{{- fail "egress.enabled with livekit.enabled=false needs egress.wsUrl (where egress joins your LiveKit's rooms)" }}
{{- end }}
{{- if and (eq (toString .Values.config.RECORDING_POLICY) "all_party") (not .Values.egress.enabled) (not .Values.recordings.existingClaim) }}
{{- fail "config.RECORDING_POLICY=all_party needs egress.enabled (or recordings.existingClaim, a volume your own egress writes to)" }}
{{- end }}
{{- end }}
