{{/*
Expand the name of the chart.
*/}}
{{- define "inferq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name, truncated at 63 characters (DNS label limit).
If the release name contains the chart name it is used as the full name.
*/}}
{{- define "inferq.fullname" -}}
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

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "inferq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object. Call with (dict "context" $ "component" "api").
*/}}
{{- define "inferq.labels" -}}
helm.sh/chart: {{ include "inferq.chart" .context }}
{{ include "inferq.selectorLabels" . }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
app.kubernetes.io/part-of: inferq
{{- with .context.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: immutable once a Deployment or StatefulSet exists, so kept apart from
the labels above. Call with (dict "context" $ "component" "worker" "pool" "batch").
*/}}
{{- define "inferq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inferq.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- with .pool }}
inferq.io/pool: {{ . }}
{{- end }}
{{- end }}

{{/*
Name of one component's objects, e.g. "<fullname>-api" or "<fullname>-worker-batch".
Call with (dict "context" $ "suffix" "api").
*/}}
{{- define "inferq.componentName" -}}
{{- printf "%s-%s" (include "inferq.fullname" .context | trunc (int (sub 62 (len .suffix)))) .suffix | trimSuffix "-" }}
{{- end }}

{{/*
The selector the API's cluster view uses to find worker Deployments (INFERQ_K8S_WORKER_SELECTOR).
*/}}
{{- define "inferq.workerSelector" -}}
app.kubernetes.io/instance={{ .Release.Name }},app.kubernetes.io/component=worker
{{- end }}

{{/*
Image reference of a component. Call with (dict "context" $ "image" .Values.api.image).
*/}}
{{- define "inferq.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .context.Chart.AppVersion) }}
{{- end }}

{{/*
Service account of the API pods.
*/}}
{{- define "inferq.api.serviceAccountName" -}}
{{- if .Values.api.serviceAccount.create }}
{{- default (include "inferq.componentName" (dict "context" . "suffix" "api")) .Values.api.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.api.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Service account of the worker pods.
*/}}
{{- define "inferq.worker.serviceAccountName" -}}
{{- if .Values.workers.serviceAccount.create }}
{{- default (include "inferq.componentName" (dict "context" . "suffix" "worker")) .Values.workers.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.workers.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The worker pools, resolved, as JSON (read with fromJson): name to settings, each with its
kind (default: its name), its queue (default: its name), its models and whether it is
enabled (default: true). A pool that is not one of the three kinds starts from the
settings of its kind's pool and overrides what it sets; it never inherits that pool's
enabled, queue or models. The code's copy is services/common/pools.py.
*/}}
{{- define "inferq.workerPools" -}}
{{- $all := .Values.workers.pools }}
{{- $pools := dict }}
{{- range $name, $spec := $all }}
{{- $spec = $spec | default dict }}
{{- $kind := $spec.kind | default $name }}
{{- $resolved := deepCopy $spec }}
{{- if and (ne $kind $name) (get $all $kind) }}
{{- $resolved = mergeOverwrite (omit (deepCopy (get $all $kind)) "enabled" "queue" "models") $resolved }}
{{- end }}
{{- $_ := set $resolved "kind" $kind }}
{{- $_ = set $resolved "queue" ($spec.queue | default $name) }}
{{- $_ = set $resolved "models" ($spec.models | default list) }}
{{- $_ = set $resolved "enabled" (ternary $spec.enabled true (hasKey $spec "enabled")) }}
{{- $_ = set $pools $name $resolved }}
{{- end }}
{{- toJson $pools }}
{{- end }}

{{/*
Routing for the API, as JSON environment values (services/common/settings.py): the queue
predictions go to (the inference pool's), the queue of each model an enabled pool claims,
and the queue and kind of every enabled pool.
*/}}
{{- define "inferq.routingEnv" -}}
{{- $pools := include "inferq.workerPools" . | fromJson }}
{{- $modelQueues := dict }}
{{- $poolQueues := dict }}
{{- $poolKinds := dict }}
{{- range $name, $spec := $pools }}
{{- if $spec.enabled }}
{{- $_ := set $poolQueues $name $spec.queue }}
{{- $_ = set $poolKinds $name $spec.kind }}
{{- range $spec.models }}
{{- $_ := set $modelQueues . $spec.queue }}
{{- end }}
{{- end }}
{{- end }}
- name: INFERQ_PREDICT_QUEUE
  value: {{ (get $pools "inference" | default dict).queue | default "inference" | quote }}
- name: INFERQ_MODEL_QUEUES
  value: {{ toJson $modelQueues | quote }}
- name: INFERQ_POOL_QUEUES
  value: {{ toJson $poolQueues | quote }}
- name: INFERQ_POOL_KINDS
  value: {{ toJson $poolKinds | quote }}
{{- end }}

{{/*
Redis key names: the chart's one copy of services/common/keys.py, which defines them for
the code. KEDA counts both keys of a pool (see worker-scaledobject.yaml).
A queue: the Redis list of that name (keys.queue_key). Call with the queue.
*/}}
{{- define "inferq.keys.queue" -}}
{{- . }}
{{- end }}

{{/*
What the workers of a queue hold, reserved or running: a Redis hash (keys.unacked_key).
Call with the queue.
*/}}
{{- define "inferq.keys.unacked" -}}
{{- printf "inferq:unacked:%s" . }}
{{- end }}

{{/*
The largest finite bucket of the task latency histograms, in seconds: the chart's copy of
services/common/metrics.py TASK_LATENCY_BUCKETS[-1].
*/}}
{{- define "inferq.metrics.taskLatencyBucketsMax" -}}
86400
{{- end }}

{{/*
Port of a worker's /metrics and /healthz (inferq worker --metrics-port).
*/}}
{{- define "inferq.worker.metricsPort" -}}
9808
{{- end }}

{{/*
Port of the API server (inferq api --port).
*/}}
{{- define "inferq.api.port" -}}
8000
{{- end }}

{{/*
Where the images keep their baked demo model store (INFERQ_MODEL_STORE in the Dockerfiles).
*/}}
{{- define "inferq.models.imageStore" -}}
/opt/inferq/models
{{- end }}

{{/*
The model store the pods use: the bucket under storage.url with storage.models.enabled,
the mounted claim when one is given, else the baked store.
*/}}
{{- define "inferq.models.store" -}}
{{- if .Values.storage.models.enabled }}
{{- printf "%s/%s" (trimSuffix "/" .Values.storage.url) .Values.storage.models.prefix }}
{{- else if .Values.models.persistence.existingClaim }}
{{- .Values.models.persistence.mountPath }}
{{- else }}
{{- include "inferq.models.imageStore" . }}
{{- end }}
{{- end }}

{{/*
Name of the chart's Redis (its client Service and StatefulSet).
*/}}
{{- define "inferq.redis.fullname" -}}
{{- include "inferq.componentName" (dict "context" . "suffix" "redis") }}
{{- end }}

{{/*
True when the chart runs its own Redis rather than using redis.external.url.
*/}}
{{- define "inferq.redis.internal" -}}
{{- if not .Values.redis.external.url }}true{{ end }}
{{- end }}

{{/*
INFERQ_REDIS_URL of a component: never holds the password, which comes from
INFERQ_REDIS_PASSWORD. With the chart's Redis and its ACL users, the URL names the
component's user. Call with (dict "context" $ "user" "api").
*/}}
{{- define "inferq.redis.url" -}}
{{- $ := .context }}
{{- if $.Values.redis.external.url }}
{{- $.Values.redis.external.url }}
{{- else }}
{{- $user := "" }}
{{- if and (include "inferq.redis.acl" $) .user }}
{{- $user = printf "%s@" .user }}
{{- end }}
{{- printf "%s://%s%s:6379/0" (ternary "rediss" "redis" (not (empty (include "inferq.redis.tls" $)))) $user (include "inferq.redis.fullname" $) }}
{{- end }}
{{- end }}

{{/*
True when the chart's Redis runs with ACL users (api, worker, keda) and its default user
off, rather than one password for everyone.
*/}}
{{- define "inferq.redis.acl" -}}
{{- if and (include "inferq.redis.internal" .) .Values.redis.acl.enabled }}true{{ end }}
{{- end }}

{{/*
The ACL users of the chart's Redis and their rules, as JSON (read with fromJson): user to
the list of rules after its password. api and worker may use inferq's keys (keys.py's
"inferq:" prefix), the pools' queues (one list each, named after the queue), kombu's
queue bindings ("_kombu.binding*") and inferq's channels, with every command but the
dangerous and administrative ones (INFO excepted: the API reads Redis's version and
memory). keda reads each pool's backlog, the queue and its unacked hash, with exactly the
commands of KEDA's redis scaler: PING when it connects, then an EVAL of a script calling
TYPE and LLEN or HLEN (older releases call these directly). Redis checks the commands a
script calls against the user too, so keda writes nothing; its key patterns are not
read-only (%R~) only because Redis counts every key given to EVAL as written. Its client
also sends CLIENT SETINFO on connecting, and carries on when that is refused.
*/}}
{{- define "inferq.redis.aclUsers" -}}
{{- $queues := list }}
{{- range $pool, $spec := include "inferq.workerPools" . | fromJson }}
{{- if $spec.enabled }}
{{- $queues = append $queues $spec.queue }}
{{- end }}
{{- end }}
{{- $app := list "resetchannels" "&inferq:*" "resetkeys" "~inferq:*" "~_kombu.binding*" }}
{{- range $queues }}
{{- $app = append $app (printf "~%s" (include "inferq.keys.queue" .)) }}
{{- end }}
{{- $app = concat $app (list "+@all" "-@dangerous" "-@admin" "+info") }}
{{- $keda := list "resetchannels" "resetkeys" }}
{{- range $queues }}
{{- $keda = concat $keda (list (printf "~%s" (include "inferq.keys.queue" .)) (printf "~%s" (include "inferq.keys.unacked" .))) }}
{{- end }}
{{- $keda = concat $keda (list "-@all" "+ping" "+eval" "+type" "+llen" "+hlen") }}
{{- toJson (dict "api" $app "worker" $app "keda" $keda) }}
{{- end }}

{{/*
The Secret holding the ACL users' passwords (keys api-password, worker-password,
keda-password): redis.acl.existingSecret, else the chart's generated one.
*/}}
{{- define "inferq.redis.usersSecretName" -}}
{{- .Values.redis.acl.existingSecret | default (printf "%s-users" (include "inferq.redis.fullname" .)) }}
{{- end }}

{{/*
The user KEDA reads the backlog as: keda with the chart's ACL users, else the external
URL's user (rediss://user@host), else none.
*/}}
{{- define "inferq.redis.kedaUser" -}}
{{- if include "inferq.redis.acl" . }}
{{- print "keda" }}
{{- else if .Values.redis.external.url }}
{{- (urlParse .Values.redis.external.url).userinfo }}
{{- end }}
{{- end }}

{{/*
The Secret and key holding the CA bundle clients check Redis's certificate against:
redis.tls.existingSecret (ca.crt) for the chart's Redis, redis.external.caSecret for
an external one; empty when there is none (plain Redis, or the system's CAs).
*/}}
{{- define "inferq.redis.caSecret" -}}
{{- if include "inferq.redis.internal" . }}
{{- if .Values.redis.tls.enabled }}{{ .Values.redis.tls.existingSecret }}{{ end }}
{{- else }}
{{- .Values.redis.external.caSecret }}
{{- end }}
{{- end }}

{{/*
The entry of that Secret holding the CA bundle.
*/}}
{{- define "inferq.redis.caKey" -}}
{{- if include "inferq.redis.internal" . }}
{{- print "ca.crt" }}
{{- else }}
{{- .Values.redis.external.caSecretKey }}
{{- end }}
{{- end }}

{{/*
Where the CA bundle is mounted in the API and worker containers (INFERQ_REDIS_CA_FILE).
*/}}
{{- define "inferq.redis.caDir" -}}
/etc/inferq/redis-ca
{{- end }}

{{/*
host:port for KEDA's Redis scaler. Its operator runs in another namespace, hence the FQDN.
*/}}
{{- define "inferq.redis.address" -}}
{{- if .Values.redis.external.url }}
{{- $url := urlParse .Values.redis.external.url }}
{{- if contains ":" $url.host }}
{{- $url.host }}
{{- else }}
{{- printf "%s:6379" $url.host }}
{{- end }}
{{- else }}
{{- printf "%s.%s.svc.%s:6379" (include "inferq.redis.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}
{{- end }}

{{/*
Redis database index, from the external URL's path (default 0).
*/}}
{{- define "inferq.redis.database" -}}
{{- if .Values.redis.external.url }}
{{- (urlParse .Values.redis.external.url).path | trimPrefix "/" | default "0" }}
{{- else }}
{{- print "0" }}
{{- end }}
{{- end }}

{{/*
True when clients talk TLS to Redis: the chart's Redis with redis.tls.enabled, or a
rediss:// external URL.
*/}}
{{- define "inferq.redis.tls" -}}
{{- if include "inferq.redis.internal" . }}
{{- if .Values.redis.tls.enabled }}true{{ end }}
{{- else if hasPrefix "rediss://" .Values.redis.external.url }}true{{ end }}
{{- end }}

{{/*
True when Redis has a password: always for the chart's Redis, for an external one when
redis.auth gives one.
*/}}
{{- define "inferq.redis.hasPassword" -}}
{{- if or (include "inferq.redis.internal" .) .Values.redis.auth.existingSecret .Values.redis.auth.password }}true{{ end }}
{{- end }}

{{/*
INFERQ_REDIS_PASSWORD of a component: with the chart's ACL users, the password of its own
user only. Call with (dict "context" $ "user" "api").
*/}}
{{- define "inferq.redis.passwordEnv" -}}
{{- $ := .context }}
{{- if include "inferq.redis.acl" $ }}
- name: INFERQ_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "inferq.redis.usersSecretName" $ }}
      key: {{ printf "%s-password" .user }}
{{- else if include "inferq.redis.hasPassword" $ }}
- name: INFERQ_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "inferq.redis.secretName" $ }}
      key: {{ include "inferq.redis.secretKey" $ }}
{{- end }}
{{- end }}

{{/*
The Secret holding the Redis password.
*/}}
{{- define "inferq.redis.secretName" -}}
{{- if .Values.redis.auth.existingSecret }}
{{- .Values.redis.auth.existingSecret }}
{{- else }}
{{- include "inferq.redis.fullname" . }}
{{- end }}
{{- end }}

{{/*
The key of the Redis password in that Secret.
*/}}
{{- define "inferq.redis.secretKey" -}}
{{- if .Values.redis.auth.existingSecret }}
{{- .Values.redis.auth.existingSecretPasswordKey }}
{{- else }}
{{- print "redis-password" }}
{{- end }}
{{- end }}

{{/*
Environment every inferq container shares: Redis (as the component's own user), model
store, logging, tracing. Call with (dict "context" $ "service" "inferq-api" "user" "api").
*/}}
{{- define "inferq.commonEnv" -}}
{{- $ := .context -}}
- name: INFERQ_REDIS_URL
  value: {{ include "inferq.redis.url" (dict "context" $ "user" .user) | quote }}
{{- include "inferq.redis.passwordEnv" (dict "context" $ "user" .user) }}
{{- if include "inferq.redis.caSecret" $ }}
- name: INFERQ_REDIS_CA_FILE
  value: {{ printf "%s/ca.crt" (include "inferq.redis.caDir" $) }}
{{- end }}
- name: INFERQ_MODEL_STORE
  value: {{ include "inferq.models.store" $ | quote }}
{{- include "inferq.storageEnv" $ }}
- name: INFERQ_LOG_FORMAT
  value: json
- name: INFERQ_LOG_LEVEL
  value: {{ $.Values.logging.level | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ .service | quote }}
{{- with $.Values.otel }}
{{- if .endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/protobuf
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | quote }}
{{- else }}
- name: OTEL_SDK_DISABLED
  value: "true"
{{- end }}
{{- end }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ include "inferq.otelResourceAttributes" $ | quote }}
{{- end }}

{{/*
Object storage: INFERQ_STORAGE_URL and the standard AWS variables; the keys come from an
existing Secret, or none are set and the pod's cloud identity is used.
*/}}
{{- define "inferq.storageEnv" -}}
{{- with .Values.storage }}
- name: INFERQ_STORAGE_URL
  {{- /* Without a bucket: the pod's own writable /tmp (the root filesystem is read-only). */}}
  value: {{ .url | default "/tmp/inferq-storage" | quote }}
{{- if .endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ .endpoint | quote }}
{{- end }}
{{- if .region }}
- name: AWS_REGION
  value: {{ .region | quote }}
{{- end }}
{{- with .credentials }}
{{- if .existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
OTEL_RESOURCE_ATTRIBUTES: the pod's identity (expanded by the kubelet) plus values'
otel.resourceAttributes.
*/}}
{{- define "inferq.otelResourceAttributes" -}}
{{- $attributes := list "k8s.pod.name=$(K8S_POD_NAME)" "k8s.namespace.name=$(K8S_NAMESPACE_NAME)" (printf "service.version=%s" .Chart.AppVersion) }}
{{- range $key, $value := .Values.otel.resourceAttributes }}
{{- $attributes = append $attributes (printf "%s=%s" $key $value) }}
{{- end }}
{{- join "," $attributes }}
{{- end }}

{{/*
Pod security context of every inferq pod.
*/}}
{{- define "inferq.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Container security context of every container the chart runs.
*/}}
{{- define "inferq.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Volumes of an API or worker pod: a writable /tmp and, when configured, the model store claim.
*/}}
{{- define "inferq.volumes" -}}
- name: tmp
  emptyDir: {}
{{- with include "inferq.redis.caSecret" . }}
# The CA bundle alone, not the rest of the Secret (the chart's Redis keeps its key there).
- name: redis-ca
  secret:
    secretName: {{ . }}
    items:
      - key: {{ include "inferq.redis.caKey" $ }}
        path: ca.crt
{{- end }}
{{- if .Values.models.persistence.existingClaim }}
- name: models
  persistentVolumeClaim:
    claimName: {{ .Values.models.persistence.existingClaim }}
{{- end }}
{{- end }}

{{/*
Mounts matching inferq.volumes. Call with (dict "context" $ "readOnlyModels" true).
*/}}
{{- define "inferq.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "inferq.redis.caSecret" .context }}
- name: redis-ca
  mountPath: {{ include "inferq.redis.caDir" .context }}
  readOnly: true
{{- end }}
{{- if .context.Values.models.persistence.existingClaim }}
- name: models
  mountPath: {{ .context.Values.models.persistence.mountPath }}
  readOnly: {{ .readOnlyModels }}
{{- end }}
{{- end }}

{{/*
prometheus.io/* annotations for Prometheus set-ups that discover pods by annotation.
Call with (dict "context" $ "port" 8000).
*/}}
{{- define "inferq.scrapeAnnotations" -}}
{{- if .context.Values.monitoring.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/*
Init script of the worker pods when the model store is a claim: copy each demo model
version the claim lacks, staged aside and renamed so no reader sees half a version.
*/}}
{{- define "inferq.worker.seedModelsScript" -}}
set -eu
cd {{ include "inferq.models.imageStore" . }}
for version in */*/; do
  version="${version%/}"
  [ -d "$version" ] || continue
  target="{{ .Values.models.persistence.mountPath }}/$version"
  [ -e "$target" ] && continue
  mkdir -p "${target%/*}"
  staging="$(mktemp -d "${target%/*}/.seed-XXXXXX")"
  cp -R "$version/." "$staging/"
  chmod 755 "$staging"
  mv -T "$staging" "$target" 2>/dev/null || rm -rf "$staging"
done
{{- end }}

{{/*
Checks across values that values.schema.json cannot express; fails the render with a
message naming the key to fix.
*/}}
{{- define "inferq.validateValues" -}}
{{- $kinds := list "inference" "batch" "training" }}
{{- $queues := dict }}
{{- $models := dict }}
{{- range $pool, $spec := include "inferq.workerPools" . | fromJson }}
{{- if not (has $spec.kind $kinds) }}
{{- fail (printf "workers.pools.%s: %q is not a kind of pool; set kind to one of %s" $pool $spec.kind (join ", " $kinds)) }}
{{- end }}
{{- if not (and $spec.concurrency $spec.timeLimits $spec.autoscaling) }}
{{- fail (printf "workers.pools.%s: set concurrency, timeLimits and autoscaling (there is no %s pool to take them from)" $pool $spec.kind) }}
{{- end }}
{{- if gt (mul 2 (int $spec.timeLimits.hard)) (int (include "inferq.metrics.taskLatencyBucketsMax" $)) }}
{{- fail (printf "workers.pools.%s.timeLimits.hard: %v s is more than half the last task latency bucket (%v s): its tasks and its latency threshold could not be measured" $pool $spec.timeLimits.hard (include "inferq.metrics.taskLatencyBucketsMax" $)) }}
{{- end }}
{{- if ge (int $spec.timeLimits.soft) (int $spec.timeLimits.hard) }}
{{- fail (printf "workers.pools.%s.timeLimits: soft (%v) must be below hard (%v)" $pool $spec.timeLimits.soft $spec.timeLimits.hard) }}
{{- end }}
{{- if gt (int $spec.autoscaling.minReplicas) (int $spec.autoscaling.maxReplicas) }}
{{- fail (printf "workers.pools.%s.autoscaling: minReplicas (%v) exceeds maxReplicas (%v)" $pool $spec.autoscaling.minReplicas $spec.autoscaling.maxReplicas) }}
{{- end }}
{{- if and $.Values.keda.enabled (eq (int $spec.autoscaling.minReplicas) 0) (gt (int $spec.autoscaling.activationListLength) 0) }}
{{- fail (printf "workers.pools.%s.autoscaling: with minReplicas 0, KEDA wakes the pool only when its backlog exceeds activationListLength (%v), so up to %v tasks would wait forever; set activationListLength to 0 or minReplicas to 1 or more" $pool $spec.autoscaling.activationListLength $spec.autoscaling.activationListLength) }}
{{- end }}
{{- if and $spec.models (ne $spec.kind "inference") }}
{{- fail (printf "workers.pools.%s.models: only a pool of kind inference serves predictions" $pool) }}
{{- end }}
{{- if $spec.enabled }}
{{- with get $queues $spec.queue }}
{{- fail (printf "workers.pools.%s.queue: pool %s consumes queue %q already; give each pool a queue of its own (each pool's autoscaler counts its whole queue)" $pool . $spec.queue) }}
{{- end }}
{{- $_ := set $queues $spec.queue $pool }}
{{- range $model := $spec.models }}
{{- with get $models $model }}
{{- fail (printf "workers.pools.%s.models: model %q is served by pool %s already" $pool $model .) }}
{{- end }}
{{- $_ := set $models $model $pool }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.api.autoscaling.enabled (gt (int .Values.api.autoscaling.minReplicas) (int .Values.api.autoscaling.maxReplicas)) }}
{{- fail "api.autoscaling: minReplicas exceeds maxReplicas" }}
{{- end }}
{{- if and .Values.api.httpRoute.enabled (not .Values.api.httpRoute.parentRefs) }}
{{- fail "api.httpRoute.parentRefs: name the Gateway the HTTPRoute attaches to, e.g. [{name: inferq-gateway, namespace: gateway}]" }}
{{- end }}
{{- if ge (int .Values.api.preStopSleepSeconds) (int .Values.api.terminationGracePeriodSeconds) }}
{{- fail (printf "api.preStopSleepSeconds (%v) must be below api.terminationGracePeriodSeconds (%v): the API needs time to finish its requests after the delay" .Values.api.preStopSleepSeconds .Values.api.terminationGracePeriodSeconds) }}
{{- end }}
{{- if and .Values.api.rbac.create (not .Values.api.serviceAccount.create) (not .Values.api.serviceAccount.name) }}
{{- fail "api.serviceAccount: with create false and no name, api.rbac.create would grant its Role to the namespace's default ServiceAccount, which every pod without one of its own uses; name the API's ServiceAccount in api.serviceAccount.name or set api.rbac.create to false" }}
{{- end }}
{{- if and .Values.redis.auth.existingSecret .Values.redis.auth.password }}
{{- fail "redis.auth: set either password or existingSecret, not both" }}
{{- end }}
{{- if and (include "inferq.redis.acl" .) (or .Values.redis.auth.existingSecret .Values.redis.auth.password) }}
{{- fail "redis.auth: the chart's Redis has ACL users (redis.acl.enabled), whose passwords come from redis.acl.existingSecret (api-password, worker-password, keda-password) or a generated Secret; move them there, or set redis.acl.enabled to false to keep one password" }}
{{- end }}
{{- if and (include "inferq.redis.internal" .) .Values.redis.tls.enabled (not .Values.redis.tls.existingSecret) }}
{{- fail "redis.tls.existingSecret: name the Secret with the Redis certificate (tls.crt, tls.key and ca.crt, as cert-manager writes them)" }}
{{- end }}
{{- if and .Values.redis.external.caSecret (not (hasPrefix "rediss://" .Values.redis.external.url)) }}
{{- fail "redis.external.caSecret: a CA is for a Redis reached over TLS; give redis.external.url as rediss://" }}
{{- end }}
{{- if and .Values.auth.enabled .Values.tests.enabled .Values.auth.seedKeysSecret (not .Values.tests.apiKey.existingSecret) }}
{{- fail "tests.apiKey.existingSecret: with auth.seedKeysSecret the API seeds your keys only; name a Secret holding one of them (scope predict) for the helm test, or set tests.enabled to false" }}
{{- end }}
{{- if and .Values.storage.models.enabled (not .Values.storage.url) }}
{{- fail "storage.models.enabled: the model store goes under storage.url; set storage.url to s3://bucket/prefix" }}
{{- end }}
{{- if and .Values.storage.models.enabled .Values.models.persistence.existingClaim }}
{{- fail "storage.models.enabled and models.persistence.existingClaim: the model store is either the bucket or the claim; unset one" }}
{{- end }}
{{- end }}

{{/*
Where the chart's Redis finds its certificate, key and CA (redis.tls.existingSecret).
*/}}
{{- define "inferq.redis.tlsDir" -}}
/etc/redis/tls
{{- end }}

{{/*
The Secret holding INFERQ_AUTH_SECRET and its entry.
*/}}
{{- define "inferq.auth.secretName" -}}
{{- .Values.auth.existingSecret | default (include "inferq.componentName" (dict "context" . "suffix" "auth")) }}
{{- end }}

{{/*
The entry of that Secret holding it.
*/}}
{{- define "inferq.auth.secretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}auth-secret{{ end }}
{{- end }}

{{/*
True when the chart makes the helm test's API key itself (and the API seeds it).
*/}}
{{- define "inferq.tests.generatedKey" -}}
{{- if and .Values.auth.enabled .Values.tests.enabled (not .Values.tests.apiKey.existingSecret) (not .Values.auth.seedKeysSecret) }}true{{ end }}
{{- end }}

{{/*
The Secret holding the helm test's API key.
*/}}
{{- define "inferq.tests.keySecretName" -}}
{{- .Values.tests.apiKey.existingSecret | default (include "inferq.componentName" (dict "context" . "suffix" "test-key")) }}
{{- end }}

{{/*
The Secret (and its entry) of the seed file the API reads (INFERQ_AUTH_SEED_FILE), as
"<secret>/<entry>"; empty when there is none.
*/}}
{{- define "inferq.auth.seed" -}}
{{- if .Values.auth.enabled }}
{{- if .Values.auth.seedKeysSecret }}
{{- printf "%s/%s" .Values.auth.seedKeysSecret .Values.auth.seedKeysSecretKey }}
{{- else if include "inferq.tests.generatedKey" . }}
{{- printf "%s/keys.json" (include "inferq.tests.keySecretName" .) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Where the seed file is mounted in the API container.
*/}}
{{- define "inferq.auth.seedDir" -}}
/etc/inferq/auth-seed
{{- end }}

{{/*
Port of the API's /metrics (INFERQ_METRICS_PORT): apart from the port the Service routes.
*/}}
{{- define "inferq.api.metricsPort" -}}
9809
{{- end }}
