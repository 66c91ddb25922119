{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "quantzoo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-<chart> unless the release name already holds the chart name. */}}
{{- define "quantzoo.fullname" -}}
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

{{- define "quantzoo.operatorName" -}}
{{- printf "%s-operator" (include "quantzoo.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "quantzoo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the chart carries. */}}
{{- define "quantzoo.labels" -}}
helm.sh/chart: {{ include "quantzoo.chart" . }}
app.kubernetes.io/name: {{ include "quantzoo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: quantzoo
{{- end }}

{{/* The operator pod's selector labels (component=operator, as docs and monitors expect). */}}
{{- define "quantzoo.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "quantzoo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "quantzoo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "quantzoo.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when image.digest is set, else repository:tag (tag defaults to appVersion). */}}
{{- define "quantzoo.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* values.operands without its empty fields, as the operator reads it (QUANTZOO_OPERATOR_OPERAND_PLACEMENT). */}}
{{- define "quantzoo.operandPlacement" -}}
{{- $out := dict }}
{{- range $key, $value := .Values.operands }}
{{- if $value }}{{ $_ := set $out $key $value }}{{ end }}
{{- end }}
{{- $out | toJson }}
{{- end }}

{{/*
Resources that exist only at cluster scope. When the operator watches a list of namespaces, rules on these
stay in a ClusterRole; every other rule of files/operator-rbac-rules.yaml becomes a Role in each namespace.
*/}}
{{- define "quantzoo.clusterScopedResources" -}}
{{- list "namespaces" "nodes" "persistentvolumes" "customresourcedefinitions" "clusterroles" "clusterrolebindings" "storageclasses" "priorityclasses" "apiservices" "tokenreviews" "subjectaccessreviews" "selfsubjectaccessreviews" "certificatesigningrequests" "mutatingwebhookconfigurations" "validatingwebhookconfigurations" "tradinghalts" | toJson }}
{{- end }}

{{/* The operator's RBAC rules: files/operator-rbac-rules.yaml, the one source of truth. */}}
{{- define "quantzoo.rbacRules" -}}
{{- $raw := .Files.Get "files/operator-rbac-rules.yaml" }}
{{- if not $raw }}{{ fail "files/operator-rbac-rules.yaml is missing from the chart" }}{{ end }}
{{- fromYamlArray $raw | toJson }}
{{- end }}

{{/*
Split the rules into {"cluster": [...], "namespaced": [...]}: each rule's resources are divided between a
cluster-scoped copy and a namespaced copy (same apiGroups, verbs, resourceNames).
*/}}
{{- define "quantzoo.splitRbacRules" -}}
{{- $clusterScoped := include "quantzoo.clusterScopedResources" . | fromJsonArray }}
{{- $cluster := list }}
{{- $namespaced := list }}
{{- range $rule := include "quantzoo.rbacRules" . | fromJsonArray }}
{{- $c := list }}
{{- $n := list }}
{{- range $res := $rule.resources }}
{{- $base := regexReplaceAll "/.*$" $res "" }}
{{- if has $base $clusterScoped }}{{ $c = append $c $res }}{{ else }}{{ $n = append $n $res }}{{ end }}
{{- end }}
{{- if $c }}{{ $cluster = append $cluster (merge (dict "resources" $c) (omit $rule "resources")) }}{{ end }}
{{- if $n }}{{ $namespaced = append $namespaced (merge (dict "resources" $n) (omit $rule "resources")) }}{{ end }}
{{- end }}
{{- dict "cluster" $cluster "namespaced" $namespaced | toJson }}
{{- end }}
