{{/* Chart name, shortened to the 63 characters a label allows. */}}
{{- define "catalogd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's resources. */}}
{{- define "catalogd.fullname" -}}
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

{{/* chart label value: name-version. */}}
{{- define "catalogd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "catalogd.labels" -}}
helm.sh/chart: {{ include "catalogd.chart" . }}
{{ include "catalogd.selectorLabels" . }}
app.kubernetes.io/version: {{ regexReplaceAll "[^A-Za-z0-9._-]" (include "catalogd.imageTag" .) "_" | trunc 63 | trimAll "_.-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: server
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the pods; never change them on upgrade. */}}
{{- define "catalogd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "catalogd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "catalogd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "catalogd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "catalogd.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag | toString | trunc 63 }}
{{- end }}

{{- define "catalogd.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/* "grpc" or "http": how the kubelet probes the container. */}}
{{- define "catalogd.probeMode" -}}
{{- $mode := .Values.probes.mode | default "auto" }}
{{- if eq $mode "auto" }}
{{- if .Values.grpc.tls.enabled }}http{{ else }}grpc{{ end }}
{{- else if or (eq $mode "grpc") (eq $mode "http") }}
{{- $mode }}
{{- else }}
{{- fail (printf "probes.mode must be auto, grpc or http (got %q)" $mode) }}
{{- end }}
{{- end }}

{{/*
Worst-case seconds from the pod's deletion to catalogd's exit, which
terminationGracePeriodSeconds must exceed: the preStop sleep, the drain
(SHUTDOWN_DRAIN_MS rounded up; catalogd caps it at the grace, counted whole
here), the grace for in-flight calls (SHUTDOWN_GRACE_SECONDS), then
catalogd's own tail: up to 5 s for the gRPC core and the calls' contexts once the
grace is over (SHUTDOWN_TAIL_MS in src/grpc/server.c), and up to 5 s to flush the
dead-letter producer.
*/}}
{{- define "catalogd.shutdownTailSeconds" -}}10{{- end }}
{{- define "catalogd.drainSeconds" -}}
{{- div (add (int64 .Values.shutdownDrainMs) 999) 1000 }}
{{- end }}
{{- define "catalogd.shutdownBudgetSeconds" -}}
{{- add (int .Values.lifecycle.preStopSleepSeconds) (int (include "catalogd.drainSeconds" .)) (int .Values.shutdownGraceSeconds) (int (include "catalogd.shutdownTailSeconds" .)) }}
{{- end }}

{{/* The budget spelled out, for error messages and NOTES.txt. */}}
{{- define "catalogd.shutdownBudgetText" -}}
{{- printf "preStop %ds + drain %ds (shutdownDrainMs %d, rounded up) + grace %ds (shutdownGraceSeconds) + %ds catalogd's tail = %ds" (int .Values.lifecycle.preStopSleepSeconds) (int (include "catalogd.drainSeconds" .)) (int64 .Values.shutdownDrainMs) (int .Values.shutdownGraceSeconds) (int (include "catalogd.shutdownTailSeconds" .)) (int (include "catalogd.shutdownBudgetSeconds" .)) }}
{{- end }}

{{- define "catalogd.terminationGracePeriodSeconds" -}}
{{- $budget := int (include "catalogd.shutdownBudgetSeconds" .) }}
{{- if and (ne (toString .Values.terminationGracePeriodSeconds) "") (ne (toString .Values.terminationGracePeriodSeconds) "<nil>") }}
{{- $tgps := int .Values.terminationGracePeriodSeconds }}
{{- if le $tgps $budget }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed the worst-case shutdown: %s. Raise it, or leave it \"\" to derive it" $tgps (include "catalogd.shutdownBudgetText" .)) }}
{{- end }}
{{- $tgps }}
{{- else }}
{{- if lt (int .Values.terminationGraceMarginSeconds) 1 }}
{{- fail "terminationGraceMarginSeconds must be at least 1" }}
{{- end }}
{{- add $budget (int .Values.terminationGraceMarginSeconds) }}
{{- end }}
{{- end }}

{{/*
One probe. Call with (list $ "startup"|"readiness"|"liveness").
*/}}
{{- define "catalogd.probe" -}}
{{- $root := index . 0 }}
{{- $kind := index . 1 }}
{{- $p := index $root.Values.probes $kind }}
{{- if eq (include "catalogd.probeMode" $root) "grpc" }}
grpc:
  port: {{ int $root.Values.grpc.port }}
  service: {{ $p.grpcService | default "" | quote }}
{{- else }}
httpGet:
  path: {{ $p.httpPath }}
  port: admin
{{- end }}
periodSeconds: {{ int $p.periodSeconds }}
timeoutSeconds: {{ int $p.timeoutSeconds }}
{{- if eq $kind "startup" }}
{{- $period := int $p.periodSeconds }}
{{- if lt $period 1 }}{{ fail "probes.startup.periodSeconds must be at least 1" }}{{ end }}
failureThreshold: {{ div (add (int $p.maxStartupSeconds) (sub $period 1)) $period }}
successThreshold: 1
{{- else if eq $kind "readiness" }}
failureThreshold: {{ int $p.failureThreshold }}
successThreshold: {{ int $p.successThreshold }}
{{- else }}
failureThreshold: {{ int $p.failureThreshold }}
successThreshold: 1
{{- end }}
{{- end }}

{{/* Checks on values that templates cannot express in the schema. */}}
{{- define "catalogd.validate" -}}
{{- if not (has .Values.sync.mode (list "warm" "replay")) }}
{{- fail (printf "sync.mode must be warm or replay (got %q)" (toString .Values.sync.mode)) }}
{{- end }}
{{- if not (has .Values.logging.level (list "debug" "info" "warn" "error")) }}
{{- fail (printf "logging.level must be debug, info, warn or error (got %q)" (toString .Values.logging.level)) }}
{{- end }}
{{- if and (eq .Values.sync.mode "warm") (not .Values.database.existingSecret) }}
{{- fail "sync.mode warm needs database.existingSecret: the name of a Secret holding DATABASE_URL" }}
{{- end }}
{{- if and (eq .Values.sync.mode "replay") (not .Values.kafka.enabled) }}
{{- fail "sync.mode replay reads the catalog from Kafka: it needs kafka.enabled=true and kafka.bootstrapServers" }}
{{- end }}
{{- if and (eq .Values.sync.mode "replay") (not .Values.kafka.bootstrapServers) }}
{{- fail "sync.mode replay needs kafka.bootstrapServers" }}
{{- end }}
{{- /* Warm mode without the change feed serves a catalog that never updates:
       only when the operator says so (kafka.enabled=false), never by default. */}}
{{- if and .Values.kafka.enabled (not .Values.kafka.bootstrapServers) }}
{{- fail "kafka.bootstrapServers is required: without the change feed the catalog is loaded once and never updated. Set kafka.bootstrapServers, or kafka.enabled=false to run warm mode without a feed on purpose" }}
{{- end }}
{{- if and (not .Values.kafka.enabled) .Values.kafka.bootstrapServers }}
{{- fail "kafka.enabled=false but kafka.bootstrapServers is set: remove one of them" }}
{{- end }}
{{- if and .Values.checkpoint.enabled (not .Values.kafka.enabled) }}
{{- fail "checkpoint.enabled needs kafka.enabled=true: a checkpoint is brought up to date from the change topic" }}
{{- end }}
{{- if and .Values.checkpoint.enabled (eq .Values.checkpoint.volumeType "pvc") (not .Values.checkpoint.existingClaim) }}
{{- fail "checkpoint.volumeType pvc needs checkpoint.existingClaim" }}
{{- end }}
{{- if and .Values.peerBootstrap.enabled (not .Values.kafka.enabled) }}
{{- fail "peerBootstrap.enabled needs kafka.enabled=true: a peer's snapshot is brought up to date from the change topic" }}
{{- end }}
{{- if and .Values.grpc.tls.enabled (not .Values.grpc.tls.secretName) }}
{{- fail "grpc.tls.enabled needs grpc.tls.secretName" }}
{{- end }}
{{- if and .Values.grpc.tls.clientAuth.enabled (not .Values.grpc.tls.enabled) }}
{{- fail "grpc.tls.clientAuth.enabled needs grpc.tls.enabled" }}
{{- end }}
{{- /* Properties the chart sets itself from other values: setting them again would
render the variable twice (Kubernetes keeps one of them, silently). */}}
{{- $own := dict }}
{{- if .Values.kafka.sasl.existingSecret }}
{{- $_ := set $own "sasl.password" "kafka.sasl.existingSecret" }}
{{- if .Values.kafka.sasl.usernameKey }}{{ $_ := set $own "sasl.username" "kafka.sasl.existingSecret" }}{{ end }}
{{- end }}
{{- with .Values.kafka.tls }}
{{- if .caSecretName }}{{ $_ := set $own "ssl.ca.location" "kafka.tls.caSecretName" }}{{ end }}
{{- if .clientCertSecretName }}
{{- $_ := set $own "ssl.certificate.location" "kafka.tls.clientCertSecretName" }}
{{- $_ := set $own "ssl.key.location" "kafka.tls.clientCertSecretName" }}
{{- end }}
{{- end }}
{{- range $k, $v := .Values.kafka.properties }}
{{- if hasKey $own $k }}
{{- fail (printf "kafka.properties: %q is already set by %s" $k (get $own $k)) }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9][a-z0-9.]*$" $k) }}
{{- fail (printf "kafka.properties: %q is not a librdkafka property name (lower case, dot-separated)" $k) }}
{{- end }}
{{- if has $k (list "bootstrap.servers" "topic" "dlq.topic") }}
{{- fail (printf "kafka.properties: set %q with its own kafka.* value" $k) }}
{{- end }}
{{- if include "catalogd.secretLikeProperty" $k }}
{{- fail (printf "kafka.properties: %q is a credential and must not be in values (they end up in the Deployment, readable by anyone who can read it): put it in a Secret and name it in kafka.secretProperties ({property: %s, secretName: ..., key: ...})" $k $k) }}
{{- end }}
{{- end }}
{{- $seen := dict }}
{{- range $i, $p := .Values.kafka.secretProperties }}
{{- if not (regexMatch "^[a-z0-9][a-z0-9.]*$" (toString $p.property)) }}
{{- fail (printf "kafka.secretProperties[%d].property: %q is not a librdkafka property name (lower case, dot-separated)" $i (toString $p.property)) }}
{{- end }}
{{- if hasKey $own (toString $p.property) }}
{{- fail (printf "kafka.secretProperties[%d]: %q is already set by %s" $i $p.property (get $own (toString $p.property))) }}
{{- end }}
{{- if or (hasKey $.Values.kafka.properties $p.property) (hasKey $seen $p.property) }}
{{- fail (printf "kafka.secretProperties[%d]: %q is set twice (kafka.properties or an earlier entry)" $i $p.property) }}
{{- end }}
{{- if has $p.property (list "bootstrap.servers" "topic" "dlq.topic") }}
{{- fail (printf "kafka.secretProperties[%d]: set %q with its own kafka.* value" $i $p.property) }}
{{- end }}
{{- $_ := set $seen $p.property true }}
{{- end }}
{{- end }}

{{/*
Non-empty when librdkafka property $k holds (or may hold) a secret: any
password, secret, token, credential, private key or JAAS/OAUTHBEARER config,
and the SASL user name. Such properties come from Secrets only
(kafka.secretProperties, kafka.sasl). Call with the property name.
*/}}
{{- define "catalogd.secretLikeProperty" -}}
{{- $k := . }}
{{- if regexMatch "(password|passwd|secret|credential|private|jaas)" $k }}yes
{{- else if regexMatch "(^|\\.)(token|key)(\\.pem)?$" $k }}yes
{{- else if has $k (list "sasl.username" "sasl.oauthbearer.config" "ssl.key.pem") }}yes
{{- end }}
{{- end }}

{{/* The headless Service on the admin port that lists ready pods, for peer bootstrap.
The fullname is cut first, so the suffix survives (the name never equals the main Service's). */}}
{{- define "catalogd.peersService" -}}
{{- printf "%s-peers" (include "catalogd.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{/* The headless Service on the gRPC port, for client-side round_robin (same rule). */}}
{{- define "catalogd.headlessService" -}}
{{- printf "%s-headless" (include "catalogd.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{/* A value for an environment variable: numbers as Go's %v would give them
except whole numbers, which YAML hands over as float64 (1048576 would render
as 1.048576e+06, which librdkafka reads as 1), and small fractions (1e-05),
which become plain decimals. */}}
{{- define "catalogd.envValue" -}}
{{- $v := . }}
{{- if or (eq (kindOf $v) "float64") (eq (kindOf $v) "float32") }}
{{- if eq (float64 (int64 $v)) (float64 $v) }}{{ int64 $v }}{{ else }}{{ regexReplaceAll "\\.?0+$" (printf "%.9f" $v) "" }}{{ end }}
{{- else }}{{ toString $v }}{{ end }}
{{- end }}

{{/* The pods of this release, as a Prometheus regular expression. A pod's name is its
Deployment's name, the pod-template hash (up to 10 characters) and 5 random ones, the part
before the random ones cut to 58 characters: for a long fullname only its first 58
characters are certain. */}}
{{- define "catalogd.podRegex" -}}
{{- $f := include "catalogd.fullname" . }}
{{- if le (len $f) 46 }}{{ printf "%s-[a-z0-9]+-[a-z0-9]+" $f }}{{ else }}{{ printf "%s.*" (trunc 58 $f) }}{{ end }}
{{- end }}
