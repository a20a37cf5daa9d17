{{/* The chart's name, and the release's full name (63 characters at most). */}}
{{- define "ory-ext-authz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ory-ext-authz.fullname" -}}
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

{{- define "ory-ext-authz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ory-ext-authz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ory-ext-authz.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ory-ext-authz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ory-ext-authz
{{- end -}}

{{- define "ory-ext-authz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ory-ext-authz.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The port of a listen address such as ":9001" or "0.0.0.0:9001". */}}
{{- define "ory-ext-authz.port" -}}
{{- regexReplaceAll "^.*:" . "" -}}
{{- end -}}

{{/* Where the chart mounts the files it names in flags. */}}
{{- define "ory-ext-authz.paths" -}}
routes: /etc/ory-ext-authz/routes/routes.yaml
jwks: /etc/ory-ext-authz/jwks/jwks.public.json
tlsDir: /etc/ory-ext-authz/tls
clientCADir: /etc/ory-ext-authz/client-ca
redisDir: /etc/ory-ext-authz/redis
redisTLSDir: /etc/ory-ext-authz/redis-tls
{{- end -}}

{{/* Names of the Secrets and ConfigMaps, given or the chart's own. */}}
{{- define "ory-ext-authz.tlsSecret" -}}
{{- default (printf "%s-tls" (include "ory-ext-authz.fullname" .)) .Values.tls.secretName -}}
{{- end -}}
{{- define "ory-ext-authz.clientCASecret" -}}
{{- if .Values.tls.clientCA.secretName -}}{{ .Values.tls.clientCA.secretName }}{{- else -}}{{ include "ory-ext-authz.tlsSecret" . }}{{- end -}}
{{- end -}}
{{- define "ory-ext-authz.redisSecret" -}}
{{- default (printf "%s-redis" (include "ory-ext-authz.fullname" .)) .Values.redis.secret.existingSecret -}}
{{- end -}}
{{- define "ory-ext-authz.routesConfigMap" -}}
{{- default (printf "%s-routes" (include "ory-ext-authz.fullname" .)) .Values.routes.existingConfigMap -}}
{{- end -}}
{{- define "ory-ext-authz.jwksConfigMap" -}}
{{- default (printf "%s-jwks" (include "ory-ext-authz.fullname" .)) .Values.jwks.existingConfigMap -}}
{{- end -}}

{{/*
The flags as JSON: .Values.config with the ones the chart sets from other
values added. A flag set both ways fails the render.
*/}}
{{- define "ory-ext-authz.flags" -}}
{{- $paths := include "ory-ext-authz.paths" . | fromYaml -}}
{{- $flags := deepCopy (.Values.config | default dict) -}}
{{- $managed := dict -}}
{{- if .Values.routes.enabled -}}
{{- $_ := set $managed "routes" (dict "value" $paths.routes "by" "routes.enabled") -}}
{{- end -}}
{{- if .Values.jwks.enabled -}}
{{- $_ := set $managed "jwks-publish" (dict "value" $paths.jwks "by" "jwks.enabled") -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $_ := set $managed "tls-cert" (dict "value" (printf "%s/tls.crt" $paths.tlsDir) "by" "tls.enabled") -}}
{{- $_ := set $managed "tls-key" (dict "value" (printf "%s/tls.key" $paths.tlsDir) "by" "tls.enabled") -}}
{{- if .Values.tls.clientCA.enabled -}}
{{- $_ := set $managed "tls-client-ca" (dict "value" (printf "%s/ca.crt" $paths.clientCADir) "by" "tls.clientCA.enabled") -}}
{{- end -}}
{{- end -}}
{{- if .Values.redis.enabled -}}
{{- if .Values.redis.urlSecret.name -}}
{{- /* from the Secret: deployment.yaml adds it as valueFrom */ -}}
{{- $_ := set $managed "redis-url" (dict "value" nil "by" "redis.urlSecret") -}}
{{- else -}}
{{- $_ := set $managed "redis-url" (dict "value" .Values.redis.url "by" "redis.url") -}}
{{- end -}}
{{- $_ := set $managed "redis-timeout" (dict "value" .Values.redis.timeout "by" "redis.timeout") -}}
{{- $_ := set $managed "redis-secret-file" (dict "value" (printf "%s/secret" $paths.redisDir) "by" "redis.enabled") -}}
{{- if .Values.redis.secret.previous -}}
{{- $_ := set $managed "redis-previous-secret-file" (dict "value" (printf "%s/previous-secret" $paths.redisDir) "by" "redis.secret.previous") -}}
{{- end -}}
{{- if .Values.redis.tls.secretName -}}
{{- $_ := set $managed "redis-ca-file" (dict "value" (printf "%s/ca.crt" $paths.redisTLSDir) "by" "redis.tls.secretName") -}}
{{- if .Values.redis.tls.clientCert -}}
{{- $_ := set $managed "redis-cert-file" (dict "value" (printf "%s/tls.crt" $paths.redisTLSDir) "by" "redis.tls.clientCert") -}}
{{- $_ := set $managed "redis-key-file" (dict "value" (printf "%s/tls.key" $paths.redisTLSDir) "by" "redis.tls.clientCert") -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $m := $managed -}}
{{- if hasKey $flags $name -}}
{{- fail (printf "config.%s: the chart sets this flag from %s; remove it from config" $name $m.by) -}}
{{- end -}}
{{- $_ := set $flags $name $m.value -}}
{{- end -}}
{{- toJson $flags -}}
{{- end -}}

{{/* A flag's value as its environment variable holds it. */}}
{{- define "ory-ext-authz.flagValue" -}}
{{- if kindIs "float64" . -}}{{ int64 . }}{{- else -}}{{ toString . }}{{- end -}}
{{- end -}}
