{{- define "picmetric.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "picmetric.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object; "component" is triton, gateway or migrate. */}}
{{- define "picmetric.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "picmetric.selectorLabels" . }}
{{- end }}

{{- define "picmetric.selectorLabels" -}}
app.kubernetes.io/name: {{ include "picmetric.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "picmetric.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "picmetric.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "picmetric.tritonServiceAccountName" -}}
{{- if .Values.triton.serviceAccount.create }}
{{- default (printf "%s-triton" (include "picmetric.fullname" .)) .Values.triton.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.triton.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Triton's admin key from the Secret, for the gateway (repair) and Triton (its flags). */}}
{{- define "picmetric.tritonAdminKeyEnv" -}}
- name: PICMETRIC_TRITON_ADMIN_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.gateway.existingSecret }}
      key: {{ .Values.gateway.secretKeys.tritonAdminKey }}
{{- end }}

{{/* Triton's flags that lock its admin API behind the key (core/triton_admin.py); Kubernetes
expands $(PICMETRIC_TRITON_ADMIN_KEY) from the container's env, so the key is not in the spec. */}}
{{- define "picmetric.tritonRestrictedArgs" -}}
{{- $setting := "model-repository,shared-memory,trace,logging:picmetric-admin-key=$(PICMETRIC_TRITON_ADMIN_KEY)" -}}
- --http-restricted-api={{ $setting }}
- --grpc-restricted-protocol={{ $setting }}
{{- end }}

{{/* The gateway's operations port (PICMETRIC_OPS_PORT): /metrics and the readiness report,
beside the API's 8080. The container, the Service and the ServiceMonitor name it `metrics`. */}}
{{- define "picmetric.gatewayOpsPort" -}}
8081
{{- end }}

{{/* repository:tag, or repository:tag@digest when image.digest is set (the digest decides). */}}
{{- define "picmetric.image" -}}
{{ .repository }}:{{ .tag }}{{ with .digest }}@{{ . }}{{ end }}
{{- end }}

{{- define "picmetric.gatewayImage" -}}
{{ include "picmetric.image" .Values.gateway.image }}
{{- end }}

{{/* The model repository volume of a pod: filled by the fetch init container, or a claim. */}}
{{- define "picmetric.modelVolume" -}}
- name: models
{{- if eq .Values.modelRepository.source "pvc" }}
  persistentVolumeClaim:
    claimName: {{ required "modelRepository.pvc.claimName is required when modelRepository.source is pvc" .Values.modelRepository.pvc.claimName }}
    readOnly: true
{{- else }}
  emptyDir: {}
- name: fetch-models
  configMap:
    name: {{ include "picmetric.fullname" . }}-fetch-models
{{- end }}
{{- end }}

{{- define "picmetric.modelMount" -}}
- name: models
  mountPath: /models
  readOnly: true
{{- if and (eq .Values.modelRepository.source "pvc") .Values.modelRepository.pvc.subPath }}
  subPath: {{ .Values.modelRepository.pvc.subPath }}
{{- end }}
{{- end }}

{{/* Downloads and unpacks the versioned archive (the gateway image has Python and boto3). */}}
{{- define "picmetric.fetchModelsInit" -}}
{{- if eq .Values.modelRepository.source "s3" }}
- name: fetch-models
  image: {{ include "picmetric.gatewayImage" . }}
  imagePullPolicy: {{ .Values.gateway.image.pullPolicy }}
  command: ["python", "/scripts/fetch_models.py", "/models"]
  env:
    - name: MODEL_ARCHIVE_URL
      value: {{ .Values.modelRepository.s3.url | quote }}
    - name: MODEL_ARCHIVE_SHA256
      value: {{ .Values.modelRepository.s3.sha256 | quote }}
    - name: AWS_DEFAULT_REGION
      value: {{ .Values.modelRepository.s3.region | quote }}
    - name: S3_ENDPOINT_URL
      value: {{ .Values.modelRepository.s3.endpointUrl | quote }}
  securityContext:
    {{- include "picmetric.restrictedContainer" . | nindent 4 }}
  resources:
    requests:
      cpu: 100m
      memory: 256Mi
    limits:
      memory: 1Gi
  volumeMounts:
    - name: models
      mountPath: /models
    - name: fetch-models
      mountPath: /scripts
      readOnly: true
{{- end }}
{{- end }}

{{- define "picmetric.restrictedContainer" -}}
allowPrivilegeEscalation: false
runAsNonRoot: true
runAsUser: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* gRPC target of Triton for the gateway (README.md: how requests are spread over Triton pods):
the headless Service, whose DNS answers every ready Triton pod, for the gateway's round robin; or
the ClusterIP Service, for a mesh that balances requests itself. */}}
{{- define "picmetric.tritonGrpcTarget" -}}
{{- $fullname := include "picmetric.fullname" . }}
{{- if eq .Values.gateway.tritonBalancing "clientSide" }}
{{- printf "dns:///%s-triton-headless.%s.svc.cluster.local:8001" $fullname .Release.Namespace }}
{{- else }}
{{- printf "%s-triton:8001" $fullname }}
{{- end }}
{{- end }}

{{/* Spread a component's pods over each topology key (zones, then nodes), as far as the
scheduler can: ScheduleAnyway never leaves a pod pending for it. matchLabelKeys counts each
rollout's ReplicaSet on its own, so a rolling update spreads the new pods too. */}}
{{- define "picmetric.topologySpread" -}}
{{- $root := .root }}
{{- $component := .component }}
{{- range .keys }}
- topologyKey: {{ . }}
  maxSkew: 1
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "picmetric.selectorLabels" (dict "root" $root "component" $component) | nindent 6 }}
  matchLabelKeys: [pod-template-hash]
{{- end }}
{{- end }}

{{/* A PodDisruptionBudget consistent with the replicas (the floor is autoscaling.minReplicas,
which is also the fixed count without an autoscaler): maxUnavailable at least 1 (a drain is
never blocked by healthy pods) and below the floor when there are two or more (a drain never
takes every pod); unready pods may always be evicted (a broken pod does not block a drain). */}}
{{- define "picmetric.pdb" -}}
{{- $values := index .root.Values .component }}
{{- $floor := int $values.autoscaling.minReplicas }}
{{- $max := int $values.pdb.maxUnavailable }}
{{- if and (ge $floor 2) (ge $max $floor) }}
{{- fail (printf "%s.pdb.maxUnavailable %d would let a drain take all %d pods of %s.autoscaling.minReplicas: keep it below" .component $max $floor .component) }}
{{- end }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "picmetric.fullname" .root }}-{{ .component }}
  labels:
    {{- include "picmetric.labels" (dict "root" .root "component" .component) | nindent 4 }}
spec:
  maxUnavailable: {{ $max }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "picmetric.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
{{- end }}

{{/* Shutdown of both Deployments, from .Values.shutdown (values.yaml explains the sizing). */}}
{{- define "picmetric.terminationGracePeriodSeconds" -}}
{{- add .Values.shutdown.drainSeconds .Values.shutdown.longestAnalysisSeconds 10 }}
{{- end }}

{{- define "picmetric.preStopDrain" -}}
preStop:
  exec:
    command: ["sleep", "{{ .Values.shutdown.drainSeconds }}"]
{{- end }}
