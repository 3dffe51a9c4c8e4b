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

{{/* The Secret's settings that both the gateway and the job workers read (same database, same
Redis, same Triton key for a model's repair). */}}
{{- define "picmetric.serviceSecretEnv" -}}
{{- $g := .Values.gateway -}}
- name: PICMETRIC_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $g.existingSecret }}
      key: {{ $g.secretKeys.databaseUrl }}
{{ include "picmetric.tritonAdminKeyEnv" . }}
{{- with $g.secretKeys.redisUrl }}
- name: PICMETRIC_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $g.existingSecret }}
      key: {{ . }}
{{- end }}
{{- end }}

{{/* The Redis list of the job queue's waiting messages: Dramatiq's Redis broker keeps a queue's
messages in the list `<namespace>:<queue name>` (gateway/jobs/queue.py: QUEUE_KEY;
tests/deploy/test_helm_worker.py checks it against Dramatiq itself). */}}
{{- define "picmetric.jobQueueKey" -}}
dramatiq:picmetric-jobs
{{- end }}

{{/* The job workers need the queue's Redis (either template may be rendered first). */}}
{{- define "picmetric.workerNeedsRedis" -}}
{{- if not (or .Values.gateway.redisUrl .Values.gateway.secretKeys.redisUrl) }}
{{- fail "worker.enabled needs the job queue's Redis: set gateway.redisUrl or gateway.secretKeys.redisUrl" }}
{{- end }}
{{- end }}

{{/* Where the gateway and the job workers may connect (NetworkPolicy egress): DNS, Triton's
gRPC, PostgreSQL, Redis, private S3, and the public internet on internetPorts without the private
and special ranges (clients' image URLs, jobs' webhooks). */}}
{{- define "picmetric.serviceEgress" -}}
{{- $e := .Values.networkPolicy.egress -}}
{{ include "picmetric.dnsEgress" . }}
- to:
    - podSelector:
        matchLabels:
          {{- include "picmetric.selectorLabels" (dict "root" . "component" "triton") | nindent 10 }}
  ports:
    - port: 8001
      protocol: TCP
{{- range $name := list "postgres" "redis" "s3" "otlp" }}
{{- $service := index $e $name }}
{{- with $service.to }}
# {{ $name }}
- to:
    {{- toYaml . | nindent 4 }}
  ports:
    - port: {{ $service.port }}
      protocol: TCP
{{- end }}
{{- end }}
{{- if $e.internet.enabled }}
- to:
    {{- include "picmetric.publicInternet" . | nindent 4 }}
  ports:
    {{- range $e.internet.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}

{{/* Triton's flags that lock its admin API behind the key (core/triton_admin.py); Kubernetes
expands $(PICMETRIC_TRITON_ADMIN_KEY) from the container's env, so the key is not in the spec. */}}
{{- define "picmetric.tritonRestrictedArgs" -}}
{{- $setting := "model-repository,shared-memory,trace,logging:picmetric-admin-key=$(PICMETRIC_TRITON_ADMIN_KEY)" -}}
- --http-restricted-api={{ $setting }}
- --grpc-restricted-protocol={{ $setting }}
{{- end }}

{{/* Triton's OpenTelemetry flags when tracing.otlpEndpoint is set, as core/triton_trace.py writes
them for the local Triton: only the requests the gateway sent traced (rate=0), to the endpoint's
/v1/traces. */}}
{{- define "picmetric.tritonTraceArgs" -}}
{{- with .Values.tracing.otlpEndpoint }}
- --trace-config=mode=opentelemetry
- --trace-config=level=TIMESTAMPS
- --trace-config=rate=0
- --trace-config=count=-1
- --trace-config=opentelemetry,url={{ trimSuffix "/" . }}/v1/traces
{{- end }}
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

{{/* Downloads and unpacks the versioned archive (the gateway image has Python and boto3); for the
gateway ("metadata": true), the archive without weights when there is one. */}}
{{- define "picmetric.fetchModelsInit" -}}
{{- $s3 := .root.Values.modelRepository.s3 }}
{{- $url := $s3.url }}
{{- $sha256 := $s3.sha256 }}
{{- if and .metadata $s3.metadataUrl }}
{{- $url = $s3.metadataUrl }}
{{- $sha256 = $s3.metadataSha256 }}
{{- end }}
{{- with .root }}
{{- if eq .Values.modelRepository.source "s3" }}
- name: fetch-models
  image: {{ include "picmetric.gatewayImage" . }}
  imagePullPolicy: {{ .Values.gateway.image.pullPolicy }}
  command: ["python", "/scripts/fetch_models.py", "/models"]
  env:
    - name: MODEL_ARCHIVE_URL
      value: {{ $url | quote }}
    - name: MODEL_ARCHIVE_SHA256
      value: {{ $sha256 | quote }}
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
    # The archive is downloaded into a temporary file (the root filesystem is read-only).
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end }}
{{- end }}

{{- define "picmetric.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
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
{{- printf "dns:///%s-triton-headless.%s.svc.%s:8001" $fullname .Release.Namespace .Values.clusterDomain }}
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

{{/* Triton's drain: long enough for every gateway to re-resolve Triton's name (values.yaml,
shutdown.tritonDrainSeconds), and never shorter than the gateway's own. */}}
{{- define "picmetric.tritonDrainSeconds" -}}
{{- max .Values.shutdown.drainSeconds .Values.shutdown.tritonDrainSeconds }}
{{- end }}

{{- define "picmetric.tritonTerminationGracePeriodSeconds" -}}
{{- add (include "picmetric.tritonDrainSeconds" . | int) .Values.shutdown.longestAnalysisSeconds 10 }}
{{- end }}

{{/* What every pod of a component shares: pull secrets, priority class, runtime class. */}}
{{- define "picmetric.podCommon" -}}
{{- $values := index .root.Values .component }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $values.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- end }}

{{/* The Secret both Deployments read, as a checksum: secretChecksum (what the operator computed)
and, on a real install or upgrade, the Secret's data itself (lookup; empty under helm template).
A changed Secret changes both pod templates at once, so both roll together. */}}
{{- define "picmetric.secretChecksum" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.gateway.existingSecret }}
{{- printf "%s|%s" .Values.secretChecksum (toJson ($secret.data | default dict)) | sha256sum }}
{{- end }}

{{/* The replica count of a Deployment whose HPA owns it: the live count when the Deployment
exists (helm reads it), so that turning autoscaling on (or upgrading with it on) never resets the
Deployment to 1 replica; nothing under helm template (GitOps), where the HPA's own count stays. */}}
{{- define "picmetric.replicas" -}}
{{- $values := index .root.Values .component }}
{{- if not $values.autoscaling.enabled }}
replicas: {{ $values.autoscaling.minReplicas }}
{{- else }}
{{- $live := lookup "apps/v1" "Deployment" .root.Release.Namespace (printf "%s-%s" (include "picmetric.fullname" .root) .component) }}
{{- with $live }}
replicas: {{ max .spec.replicas $values.autoscaling.minReplicas }}
{{- end }}
{{- end }}
{{- end }}

{{/* The public internet for egress: every address but the private, loopback, link-local (cloud
metadata: 169.254.169.254, fd00:ec2::254), CGNAT (100.64.0.0/10, pod networks on some clouds),
multicast and reserved ranges. */}}
{{- define "picmetric.publicInternet" -}}
- ipBlock:
    cidr: 0.0.0.0/0
    except:
      - 0.0.0.0/8
      - 10.0.0.0/8
      - 100.64.0.0/10
      - 127.0.0.0/8
      - 169.254.0.0/16
      - 172.16.0.0/12
      - 192.0.0.0/24
      - 192.168.0.0/16
      - 198.18.0.0/15
      - 224.0.0.0/4
      - 240.0.0.0/4
- ipBlock:
    cidr: ::/0
    except:
      - ::1/128
      - ::ffff:0:0/96
      - 64:ff9b::/96
      - fc00::/7
      - fe80::/10
      - ff00::/8
{{- end }}

{{- define "picmetric.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.egress.dnsNamespace }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.egress.dnsPodLabels | nindent 10 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* Alerts that exist only in Kubernetes, for this release's namespace and autoscalers: a scaling
metric that is absent (the HPA then silently stops scaling), an HPA at its maximum, an HPA that
cannot read its metric (kube-state-metrics' series). */}}
{{- define "picmetric.kubernetesAlerts" -}}
{{- $ns := .Release.Namespace }}
{{- $hpas := printf "%s-(triton|gateway)" (include "picmetric.fullname" .) }}
{{- $runbook := "https://github.com/picmetric/picmetric/blob/main/deploy/helm/picmetric/README.md#" }}
- name: picmetric-kubernetes
  rules:
    {{- if .Values.triton.autoscaling.enabled }}
    - alert: PicmetricTritonScalingMetricAbsent
      expr: absent(picmetric:triton_requests_in_flight:rate1m{namespace="{{ $ns }}"})
      for: 10m
      labels:
        severity: page
        namespace: {{ $ns }}
      annotations:
        summary: The Triton autoscaler's metric is absent in {{ $ns }}
        description: No picmetric:triton_requests_in_flight:rate1m for 10 minutes (Triton not scraped, or the recording rule not loaded); the Triton HPA cannot scale.
        runbook_url: {{ $runbook }}picmetrictritonscalingmetricabsent
    {{- end }}
    {{- if .Values.gateway.autoscaling.enabled }}
    - alert: PicmetricGatewayScalingMetricAbsent
      expr: absent(picmetric_analyses_in_flight{job="gateway",namespace="{{ $ns }}"})
      for: 10m
      labels:
        severity: page
        namespace: {{ $ns }}
      annotations:
        summary: The gateway autoscaler's metric is absent in {{ $ns }}
        description: No picmetric_analyses_in_flight from the gateways' operations port for 10 minutes; the gateway HPA scales on CPU alone.
        runbook_url: {{ $runbook }}picmetricgatewayscalingmetricabsent
    {{- end }}
    - alert: PicmetricAutoscalerAtMaximum
      expr: |
        kube_horizontalpodautoscaler_status_current_replicas{namespace="{{ $ns }}",horizontalpodautoscaler=~"{{ $hpas }}"}
          >= on (namespace, horizontalpodautoscaler)
        kube_horizontalpodautoscaler_spec_max_replicas{namespace="{{ $ns }}",horizontalpodautoscaler=~"{{ $hpas }}"}
      for: 15m
      labels:
        severity: warn
      annotations:
        summary: "{{`{{ $labels.horizontalpodautoscaler }}`}} has run at its maximum for 15 minutes"
        description: The load is above what maxReplicas allows; the gateways shed 503s meanwhile. Raise maxReplicas (and the GPU node pool) or the target.
        runbook_url: {{ $runbook }}picmetricautoscaleratmaximum
    - alert: PicmetricAutoscalerCannotReadMetric
      expr: |
        kube_horizontalpodautoscaler_status_condition{namespace="{{ $ns }}",horizontalpodautoscaler=~"{{ $hpas }}",condition="ScalingActive",status="false"} == 1
      for: 10m
      labels:
        severity: page
      annotations:
        summary: "{{`{{ $labels.horizontalpodautoscaler }}`}} cannot read its metric"
        description: The HPA's ScalingActive condition has been false for 10 minutes (prometheus-adapter down, or its rule not serving the metric); it does not scale.
        runbook_url: {{ $runbook }}picmetricautoscalercannotreadmetric
{{- end }}
