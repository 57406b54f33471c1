{{/*
The alerts whose thresholds depend on the kind of pool consuming a queue (the `kind` label
of the queue gauges and task histograms), as a YAML list of rules: the group
"inferq.kinds" of files/prometheus/rules.yaml, which holds what the default values render.
Per kind, "span" is twice the largest hard time limit of its pools: no task of the kind
runs longer than half of it, so a backlog that never emptied and grew over the span with no
task finished is a stall, never one long task. A threshold left empty in values follows from the span; 0
turns the alert off for that kind.
Batch and training also get InferqJobStalled: a running job with no progress (a batch chunk
counted; a training fold, candidate or phase done) for longer than "jobStalledSeconds", by
default the kind's largest hard time limit (at least 900 s): no chunk and no training fit
runs longer, so a job past it has tasks that no worker runs.
*/}}
{{- define "inferq.prometheus.kindAlerts" -}}
{{- $pools := include "inferq.workerPools" . | fromJson }}
{{- $rules := list }}
{{- range $kind := list "inference" "batch" "training" }}
{{- $hard := 0 }}
{{- range $pools }}
{{- if eq .kind $kind }}
{{- $hard = max $hard (int .timeLimits.hard) }}
{{- end }}
{{- end }}
{{- $span := mul 2 $hard }}
{{- $config := index $.Values.monitoring.prometheusRule.kinds $kind | default dict }}
{{- $selector := printf "{kind=%q}" $kind }}
{{- $noProgress := include "inferq.prometheus.threshold" (dict "value" (index $config "noProgressSeconds") "derived" (ternary (max 900 $span) 0 (gt $hard 0))) | int }}
{{- if gt $noProgress 0 }}
{{- $window := include "inferq.prometheus.duration" $noProgress }}
{{- $human := include "inferq.humanSeconds" $noProgress }}
{{- $expr := list
  "("
  (printf "  inferq:queue_backlog%s > 0" $selector)
  (printf "  and on (namespace, queue) min_over_time(inferq:queue_backlog%s[%s]) > 0" $selector $window)
  (printf "  and on (namespace, queue) deriv(inferq:queue_backlog%s[%s]) > 0" $selector $window)
  ")"
  "unless on (namespace, queue)"
  (printf "  (sum by (namespace, queue) (increase(inferq_tasks_finished_total{status!=\"cancelled\"}[%s])) > 0)" $window)
  "unless on (namespace, queue)"
  "  sum by (namespace, queue) ("
  "    (inferq_tasks_finished_total{status!=\"cancelled\"} > 0)"
  (printf "    unless inferq_tasks_finished_total offset %s" $window)
  "  )" }}
{{- if eq $kind "batch" }}
{{- /* A batch job's chunks are no tasks: each one counted is progress of the queue. */}}
{{- $expr = concat $expr (list
  "unless on (namespace, queue)"
  (printf "  (sum by (namespace, queue) (increase(inferq_batch_chunk_seconds_count[%s])) > 0)" $window)
  "unless on (namespace, queue)"
  "  sum by (namespace, queue) ("
  "    inferq_batch_chunk_seconds_count"
  (printf "    unless inferq_batch_chunk_seconds_count offset %s" $window)
  "  )") }}
{{- end }}
{{- $rules = append $rules (dict
  "alert" "InferqBacklogNoProgress"
  "expr" (join "\n" $expr)
  "for" (ternary "5m" "15m" (eq $kind "inference"))
  "labels" (dict "severity" (index $config "noProgressSeverity" | default "warning"))
  "annotations" (dict
    "summary" (printf "Queue {{ $labels.queue }} grows and no task finished in %s" $human)
    "description" (printf "The backlog of queue {{ $labels.queue }} (pool kind %s) is {{ $value }} and rising, and no task of that queue finished in the last %s: its workers take no work or are stuck." $kind $human)
    "runbook_url" "https://github.com/inferq/inferq/blob/main/docs/operations.md#inferqbacklognoprogress")) }}
{{- end }}
{{- $latency := include "inferq.prometheus.threshold" (dict "value" (index $config "taskLatencySeconds") "derived" $span) | int }}
{{- if gt $latency 0 }}
{{- $window := include "inferq.prometheus.duration" (max 300 $span) }}
{{- $rules = append $rules (dict
  "alert" "InferqTaskLatencyHigh"
  "expr" (printf "histogram_quantile(0.99,\n  sum by (namespace, queue, kind, le) (rate(inferq_task_e2e_seconds_bucket%s[%s])))\n> %d" $selector $window $latency)
  "for" "10m"
  "labels" (dict "severity" "warning")
  "annotations" (dict
    "summary" "p99 end-to-end latency of queue {{ $labels.queue }} is {{ $value | humanizeDuration }}"
    "description" (printf "The 99th percentile of the time from submit to stored result on queue {{ $labels.queue }} (pool kind %s) has been above %s for 10 minutes (now {{ $value | humanizeDuration }})." $kind (include "inferq.humanSeconds" $latency))
    "runbook_url" "https://github.com/inferq/inferq/blob/main/docs/operations.md#inferqtasklatencyhigh")) }}
{{- end }}
{{- if has $kind (list "batch" "training") }}
{{- $stalled := include "inferq.prometheus.threshold" (dict "value" (index $config "jobStalledSeconds") "derived" (max 900 $hard)) | int }}
{{- if gt $stalled 0 }}
{{- $human := include "inferq.humanSeconds" $stalled }}
{{- $rules = append $rules (dict
  "alert" "InferqJobStalled"
  "expr" (printf "max by (namespace, kind) (inferq_job_stalled_seconds%s) > %d" $selector $stalled)
  "for" "2m"
  "labels" (dict "severity" (index $config "jobStalledSeverity" | default "warning"))
  "annotations" (dict
    "summary" (printf "A running %s job made no progress for {{ $value | humanizeDuration }}" $kind)
    "description" (ternary
      (printf "A %s job has been running with no chunk counted for {{ $value | humanizeDuration }}, more than %s: its chunks wait with no worker to take them, or run and never finish. GET /v1/batch-jobs?status=running lists the running jobs." $kind $human)
      (printf "A %s job has been running with no fold, candidate or phase done for {{ $value | humanizeDuration }}, more than %s, the longest one fit may run: no worker runs its tasks (a worker died with one, which waits for redelivery, or no training worker takes them). GET /v1/training-jobs?status=running lists the running jobs." $kind $human)
      (eq $kind "batch"))
    "runbook_url" "https://github.com/inferq/inferq/blob/main/docs/operations.md#inferqjobstalled")) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/*
A threshold from values: the number given (0: off), or the derived one when left empty.
Call with (dict "value" <value or nil> "derived" <seconds>).
*/}}
{{- define "inferq.prometheus.threshold" -}}
{{- if or (kindIs "invalid" .value) (eq (toString .value) "") }}
{{- .derived }}
{{- else }}
{{- int .value }}
{{- end }}
{{- end }}

{{/*
Seconds as a person says them: "15 minutes", "1 hour", "90 seconds".
*/}}
{{- define "inferq.humanSeconds" -}}
{{- $seconds := int . }}
{{- if and (ge $seconds 3600) (eq (mod $seconds 3600) 0) }}
{{- $hours := div $seconds 3600 }}
{{- $hours }} hour{{ if ne (int $hours) 1 }}s{{ end }}
{{- else if and (ge $seconds 60) (eq (mod $seconds 60) 0) }}
{{- $minutes := div $seconds 60 }}
{{- $minutes }} minute{{ if ne (int $minutes) 1 }}s{{ end }}
{{- else }}
{{- $seconds }} seconds
{{- end }}
{{- end }}

{{/*
Seconds as a Prometheus duration: "15m", "6h", "90s".
*/}}
{{- define "inferq.prometheus.duration" -}}
{{- $seconds := int . }}
{{- if eq (mod $seconds 3600) 0 }}{{ div $seconds 3600 }}h
{{- else if eq (mod $seconds 60) 0 }}{{ div $seconds 60 }}m
{{- else }}{{ $seconds }}s
{{- end }}
{{- end }}
