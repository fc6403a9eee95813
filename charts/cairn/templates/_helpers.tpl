{{/* Names, labels and shared pieces of the Cairn chart. */}}

{{- define "cairn.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cairn.fullname" -}}
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

{{/* Labels of every resource. */}}
{{- define "cairn.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "cairn.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cairn
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "operator"). */}}
{{- define "cairn.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cairn.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "cairn.componentLabels" -}}
{{ include "cairn.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "cairn.operatorServiceAccount" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (printf "%s-operator" (include "cairn.fullname" .)) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cairn.apiServiceAccount" -}}
{{- if .Values.api.serviceAccount.create }}
{{- default (printf "%s-api" (include "cairn.fullname" .)) .Values.api.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.api.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cairn.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "cairn.postgresqlName" -}}
{{- printf "%s-postgresql" (include "cairn.fullname" .) }}
{{- end }}

{{/* The Secret and key holding the bundled PostgreSQL's password. */}}
{{- define "cairn.postgresqlSecret" -}}
{{- default (include "cairn.postgresqlName" .) .Values.postgresql.auth.existingSecret }}
{{- end }}

{{- define "cairn.apiUrl" -}}
{{- default (printf "http://%s-api.%s.svc:%d" (include "cairn.fullname" .) .Release.Namespace (int .Values.api.port)) .Values.api.url }}
{{- end }}

{{/* The namespace of the helm test's Task and TaskRun. */}}
{{- define "cairn.testNamespace" -}}
{{- if .Values.tests.namespace }}
{{- .Values.tests.namespace }}
{{- else if .Values.watchNamespaces }}
{{- first .Values.watchNamespaces }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/* Values that contradict each other fail the install with a message (cert-manager's crd-check). */}}
{{- define "cairn.validate" -}}
{{- if and .Values.postgresql.enabled .Values.database.existingSecret }}
{{- fail "database.existingSecret points at an external PostgreSQL: set postgresql.enabled=false to use it (or unset it to use the bundled one)" }}
{{- end }}
{{- if and (not .Values.postgresql.enabled) (not .Values.database.existingSecret) }}
{{- fail "no database: set database.existingSecret to a Secret holding the DSN of your PostgreSQL, or postgresql.enabled=true for the bundled one" }}
{{- end }}
{{- if and .Values.tests.enabled .Values.watchNamespaces (not (has (include "cairn.testNamespace" .) .Values.watchNamespaces)) }}
{{- fail (printf "tests.namespace %q is not watched: add it to watchNamespaces" (include "cairn.testNamespace" .)) }}
{{- end }}
{{- if ne (len .Values.watchNamespaces) (len (uniq .Values.watchNamespaces)) }}
{{- fail "watchNamespaces lists a namespace twice" }}
{{- end }}
{{- end }}

{{/* The database settings of the operator's and the API's containers (and of wait-for-database). */}}
{{- define "cairn.databaseEnv" -}}
{{- if .Values.postgresql.enabled -}}
# The password comes from the Secret through libpq's PGPASSWORD; the DSN itself holds none.
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "cairn.postgresqlSecret" . }}
      key: password
- name: CAIRN_DATABASE_URL
  value: {{ printf "postgresql://%s@%s:5432/%s?connect_timeout=10" .Values.postgresql.auth.username (include "cairn.postgresqlName" .) .Values.postgresql.auth.database | quote }}
{{- else -}}
- name: CAIRN_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.existingSecretKey }}
{{- end }}
{{- end }}

{{/* Settings shared by the operator and the API. */}}
{{- define "cairn.commonEnv" -}}
{{ include "cairn.databaseEnv" . }}
- name: CAIRN_API_URL
  value: {{ include "cairn.apiUrl" . | quote }}
- name: CAIRN_NAMESPACES
  value: {{ join "," .Values.watchNamespaces | quote }}
- name: CAIRN_TOKEN_AUDIENCE
  value: {{ .Values.api.tokenAudience | quote }}
- name: CAIRN_LOG_FORMAT
  value: {{ .Values.logging.format | quote }}
- name: CAIRN_LOG_LEVEL
  value: {{ .Values.logging.level | quote }}
- name: CAIRN_METRICS_PORT
  value: {{ ternary .Values.metrics.port 0 .Values.metrics.enabled | quote }}
{{- end }}

{{/* An init container that waits until the database accepts connections, so that the operator and
the API do not crash-loop while the bundled PostgreSQL initialises. */}}
{{- define "cairn.waitForDatabase" -}}
- name: wait-for-database
  image: {{ include "cairn.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
  - python3
  - -c
  - |
    import os, sys, time
    import psycopg
    deadline = time.monotonic() + 600
    while True:
        try:
            psycopg.connect(os.environ["CAIRN_DATABASE_URL"], connect_timeout=3).close()
            print("the database accepts connections")
            break
        except psycopg.Error as e:
            if time.monotonic() > deadline:
                sys.exit(f"the database did not accept connections in 10 minutes: {e}")
            print(f"waiting for the database: {str(e).strip()}", flush=True)
            time.sleep(2)
  env:
  {{- include "cairn.databaseEnv" . | nindent 2 }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  resources:
    requests:
      cpu: 10m
      memory: 32Mi
    limits:
      memory: 64Mi
{{- end }}
