{{/* The chart's name, or nameOverride. */}}
{{- define "idbind.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name: fullnameOverride, else the release's name when it already holds
the chart's name (release `idbind` gives `idbind`, the kustomize tree's names), else <release>-<name>.
*/}}
{{- define "idbind.fullname" -}}
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

{{- define "idbind.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "idbind.labels" -}}
helm.sh/chart: {{ include "idbind.chart" . }}
{{ include "idbind.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: idbind
{{- end }}

{{/* What the Deployment, the Service and the PodDisruptionBudget select the operator's pods by. */}}
{{- define "idbind.selectorLabels" -}}
app.kubernetes.io/name: {{ include "idbind.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "idbind.serviceAccountName" -}}
{{- default (include "idbind.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* The leader Lease: granted by the Role and named to the operator (IDBIND_LEASE_NAME). */}}
{{- define "idbind.leaseName" -}}
{{- default (printf "%s-leader" (include "idbind.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "idbind.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/* The port of config.httpAddr (host:port, [v6]:port): the container's port, probes and Service. */}}
{{- define "idbind.httpPort" -}}
{{- regexFind "[0-9]+$" .Values.config.httpAddr }}
{{- end }}

{{/*
The ConfigMap's data: each setting of `idbind run` the values set, by its variable's name, as a
string. Empty values are left out, because an empty variable counts as set (an empty namespace, an
empty resource group). IDBIND_LEASE_NAME is written only when it differs from idbind's own default
(idbind-leader), so the default install carries the same keys as config/manager/config_map.yaml.
*/}}
{{- define "idbind.settings" -}}
{{- $c := .Values.config }}
{{- $lease := include "idbind.leaseName" . }}
{{- $verify := "off" }}
{{- if .Values.verification.enabled }}{{ $verify = .Values.verification.mode }}{{ end }}
{{- $s := dict
  "IDBIND_CLUSTER_NAME" $c.clusterName
  "IDBIND_OIDC_ISSUER" $c.oidcIssuer
  "AZURE_SUBSCRIPTION_ID" $c.subscriptionId
  "IDBIND_RESOURCE_GROUP" $c.resourceGroup
  "IDBIND_LOCATION" $c.location
  "IDBIND_CLOUD" $c.cloud
  "IDBIND_ARM_ENDPOINT" $c.armEndpoint
  "IDBIND_AUTHORITY_HOST" $c.authorityHost
  "IDBIND_ARM_AUDIENCE" $c.armAudience
  "IDBIND_CA_FILE" $c.caFile
  "IDBIND_CREDENTIAL" $c.credential
  "AZURE_CLIENT_ID" $c.clientId
  "AZURE_TENANT_ID" $c.tenantId
  "IDBIND_CONCURRENCY" ($c.concurrency | int64 | toString)
  "IDBIND_RESYNC_SECONDS" ($c.resyncSeconds | int64 | toString)
  "IDBIND_FEDERATION_CHECK_RESYNCS" ($c.federationCheckResyncs | int64 | toString)
  "IDBIND_WATCH_NAMESPACE" $c.watchNamespace
  "IDBIND_HTTP_ADDR" $c.httpAddr
  "IDBIND_LEADER_ELECT" (.Values.leaderElection.enabled | toString)
  "IDBIND_BUDGET_SCALE" ($c.budgetScale | toString)
  "IDBIND_LOG_FORMAT" $c.logFormat
  "IDBIND_VERIFY" $verify
  "IDBIND_VERIFY_FEDERATION_WINDOW_SECONDS" ($c.verifyFederationWindowSeconds | int64 | toString)
  "IDBIND_VERIFY_ACCESS_WINDOW_SECONDS" ($c.verifyAccessWindowSeconds | int64 | toString)
  "IDBIND_KEYVAULT_AUDIENCE" $c.keyvaultAudience
  "IDBIND_ALLOW_ANY_ROLE" ($c.allowAnyRole | toString)
  "IDBIND_ALLOW_OTHER_SUBSCRIPTIONS" ($c.allowOtherSubscriptions | toString)
  "IDBIND_ALLOW_EXISTING_IDENTITY" ($c.allowExistingIdentity | toString)
  "IDBIND_OPEN_NAMESPACES" ($c.openNamespaces | toString)
}}
{{- if ne $lease "idbind-leader" }}{{ $_ := set $s "IDBIND_LEASE_NAME" $lease }}{{ end }}
{{- $all := mergeOverwrite $s .Values.extraConfig }}
{{- range $key, $value := $all }}
{{- if ne (toString $value) "" }}
{{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The whole chart's consistency checks, beyond what values.schema.json can say. */}}
{{- define "idbind.validate" -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail (print "replicaCount > 1 needs leaderElection.enabled: "
  "without a Lease every replica would write to Azure") }}
{{- end }}
{{- if not (regexMatch "^(.+):[0-9]+$" .Values.config.httpAddr) }}
{{- fail (printf "config.httpAddr must be host:port, got %q" .Values.config.httpAddr) }}
{{- end }}
{{- end }}
