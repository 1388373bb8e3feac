{{/* Names and labels shared by every object of the chart. */}}

{{- define "posthaste.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-posthaste, or the release name when it already contains the chart name. */}}
{{- define "posthaste.fullname" -}}
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

{{- define "posthaste.selectorLabels" -}}
app.kubernetes.io/name: {{ include "posthaste.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "posthaste.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "posthaste.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: posthaste
{{- end -}}

{{- define "posthaste.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "posthaste.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "posthaste.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Seconds the kubelet waits after SIGTERM: longer than the drain delay plus the drain. */}}
{{- define "posthaste.terminationGracePeriodSeconds" -}}
{{- $drain := add (int .Values.server.drainDelaySeconds) (int .Values.server.drainTimeoutSeconds) -}}
{{- if eq (toString .Values.terminationGracePeriodSeconds) "" -}}
{{- add $drain 10 -}}
{{- else if le (int .Values.terminationGracePeriodSeconds) $drain -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be longer than server.drainDelaySeconds + server.drainTimeoutSeconds (%d): the kubelet would kill the server in the middle of its drain" .Values.terminationGracePeriodSeconds $drain) -}}
{{- else -}}
{{- int .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/*
Whether a Prometheus Operator object is rendered: "auto" when the cluster serves
monitoring.coreos.com/v1, else the value itself (true/false).
*/}}
{{- define "posthaste.monitoringEnabled" -}}
{{- $setting := toString .setting -}}
{{- if eq $setting "auto" -}}
{{- .root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}
{{- else if or (eq $setting "true") (eq $setting "false") -}}
{{- $setting -}}
{{- else -}}
{{- fail (printf "%s: expected true, false or auto, got %q" .name $setting) -}}
{{- end -}}
{{- end -}}
