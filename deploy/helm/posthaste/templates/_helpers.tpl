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

{{/*
The scaled-out parts (route, nginx) have names and selector labels of their own, so that the
backends' Services never select their pods. Call with (dict "root" $ "part" "route").
*/}}
{{- define "posthaste.partName" -}}
{{- printf "%s-%s" (include "posthaste.fullname" .root) .part | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "posthaste.partSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-%s" (include "posthaste.name" .root) .part | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "posthaste.partLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "posthaste.partSelectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: posthaste
app.kubernetes.io/component: {{ .part }}
{{- end -}}

{{/* The checks every scaled-out render passes, in one place. */}}
{{- define "posthaste.scaleOutChecks" -}}
{{- if .Values.scaleOut.enabled -}}
{{- if not .Values.scaleOut.etcd.endpoints -}}
{{- fail "scaleOut.enabled needs scaleOut.etcd.endpoints (the etcd cluster's client URLs)" -}}
{{- end -}}
{{- if not .Values.scaleOut.proxyNetworks -}}
{{- fail "scaleOut.enabled needs scaleOut.proxyNetworks (the proxy tier's pod network)" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.route.enabled (not .Values.scaleOut.enabled) -}}
{{- fail "route.enabled needs scaleOut.enabled (the backends register in etcd)" -}}
{{- end -}}
{{- if and .Values.route.enabled (not .Values.admin.enabled) -}}
{{- fail "route.enabled needs admin.enabled (route checks passwords through the admin API)" -}}
{{- end -}}
{{- if and .Values.proxyTier.nginx.enabled (not .Values.route.enabled) -}}
{{- fail "proxyTier.nginx.enabled needs route.enabled (nginx's auth_http)" -}}
{{- end -}}
{{- if and .Values.proxyTier.haproxy.enabled (not .Values.scaleOut.enabled) -}}
{{- fail "proxyTier.haproxy.enabled needs scaleOut.enabled (its map comes from etcd)" -}}
{{- end -}}
{{- if and .Values.proxyTier.haproxy.enabled (not .Values.tls.enabled) -}}
{{- fail "proxyTier.haproxy.enabled needs tls.enabled (TLS ends at the backends, by SNI)" -}}
{{- end -}}
{{- if and .Values.proxyTier.nginx.enabled (not .Values.proxyTier.nginx.tlsSecretName) -}}
{{- fail "proxyTier.nginx.enabled needs proxyTier.nginx.tlsSecretName (the provider's certificate)" -}}
{{- end -}}
{{- end -}}
