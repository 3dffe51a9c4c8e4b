"""The chart's bulk-job workers (deploy/helm/picmetric, `worker`): a Deployment of the gateway's
image running `picmetric worker` under the gateway's security context, scaled by a KEDA
ScaledObject on the length of the Redis list Dramatiq keeps the job queue in (checked against
Dramatiq's Redis broker itself, on a real Redis), and the network policies that let the workers
reach what they need. Rendered by a real helm and validated offline like tests/deploy/test_helm.py;
KEDA's kinds have no schema there, so their fields are checked here."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.deploy.test_helm import PRODUCTION, container, find
from tests.utils.helm import KUBERNETES_VERSION, Manifest, helm, helm_binary, render, validate
from tests.utils.redis import redis_server

WORKER = (*PRODUCTION, "-f", "ci/worker-values.yaml")


@pytest.fixture(scope="module", autouse=True)
def _helm_installed() -> None:
    try:
        helm_binary()
    except RuntimeError as error:
        pytest.fail(str(error))


def _pod(objects: tuple[Manifest, ...], component: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, "Deployment", f"-{component}")["spec"]["template"]["spec"]
    return spec


def test_chart_with_workers_lints_and_every_object_is_valid() -> None:
    result = helm("lint", ".", "--strict", "--kube-version", KUBERNETES_VERSION, *WORKER)
    assert result.returncode == 0, result.stdout + result.stderr
    for manifest in render(*WORKER):
        validate(manifest)


def test_worker_runs_the_gateway_image_as_the_gateway_runs() -> None:
    objects = render(*WORKER)
    gateway, worker = _pod(objects, "gateway"), _pod(objects, "worker")
    gateway_container = container(find(objects, "Deployment", "-gateway"), "gateway")
    worker_container = container(find(objects, "Deployment", "-worker"), "worker")
    assert worker_container["command"] == ["picmetric", "worker"]
    for field in ("image", "imagePullPolicy", "securityContext", "envFrom"):
        assert worker_container[field] == gateway_container[field], field
    for field in ("securityContext", "serviceAccountName", "automountServiceAccountToken"):
        assert worker[field] == gateway[field], field
    secrets = {e["name"]: e["valueFrom"] for e in gateway_container["env"] if "valueFrom" in e}
    env = {e["name"]: e.get("valueFrom", e.get("value")) for e in worker_container["env"]}
    for name in ("PICMETRIC_DATABASE_URL", "PICMETRIC_REDIS_URL", "PICMETRIC_TRITON_ADMIN_KEY"):
        assert env[name] == secrets[name], name
    assert "PICMETRIC_API_KEYS" not in env  # it serves no one
    assert env["PICMETRIC_JOBS_WORKER_CONCURRENCY"] == "8"
    assert env["PICMETRIC_JOBS_WORKER_CONCURRENCY_WHILE_INTERACTIVE"] == "1"
    assert "replicas" not in find(objects, "Deployment", "-worker")["spec"], "KEDA owns it"


def test_keda_scales_the_workers_on_the_length_of_dramatiqs_queue_list() -> None:
    """The ScaledObject names the worker Deployment and the Redis list that holds the messages
    Dramatiq's broker has not handed to a worker: a message sent on the job queue lands there."""
    from dramatiq import Message
    from dramatiq.brokers.redis import RedisBroker

    from gateway.jobs.queue import NAMESPACE, QUEUE_NAME

    objects = render(*WORKER)
    scaled = find(objects, "ScaledObject", "-worker")["spec"]
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": find(objects, "Deployment", "-worker")["metadata"]["name"],
    }
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 12)
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis"
    metadata = trigger["metadata"]
    assert metadata["address"] == "picmetric-redis-master.inference.svc.cluster.local:6379"
    assert (metadata["listLength"], metadata["databaseIndex"]) == ("8", "0")
    authentication = find(objects, "TriggerAuthentication", "-worker-redis")["spec"]
    assert trigger["authenticationRef"]["name"].endswith("-worker-redis")
    assert authentication["secretTargetRef"] == [
        {"parameter": "password", "name": "picmetric-prod", "key": "redis-password"}
    ]
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        broker = RedisBroker(client=client, namespace=NAMESPACE)
        broker.declare_queue(QUEUE_NAME)
        assert client.llen(metadata["listName"]) == 0
        message = Message(queue_name=QUEUE_NAME, actor_name="x", args=(), kwargs={}, options={})
        broker.enqueue(message)
        assert client.llen(metadata["listName"]) == 1
        broker.close()
        client.close()


def test_keda_reads_the_redis_of_the_gateways_url_when_not_told_another() -> None:
    objects = render(
        *("--set", "worker.enabled=true"),
        *("--set", "gateway.redisUrl=redis://redis.inference.svc:6380/2"),
    )
    metadata = find(objects, "ScaledObject", "-worker")["spec"]["triggers"][0]["metadata"]
    assert (metadata["address"], metadata["databaseIndex"]) == ("redis.inference.svc:6380", "2")
    assert all(o["kind"] != "TriggerAuthentication" for o in objects)


def test_workers_reach_triton_and_redis_and_what_the_gateway_reaches_nothing_reaches_them() -> None:
    objects = render(*WORKER)
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    worker_labels = _pod_labels(objects, "worker")
    worker = policies["picmetric-worker"]
    assert worker["podSelector"]["matchLabels"].items() <= worker_labels.items()
    assert worker["ingress"] == []
    assert worker["egress"] == policies["picmetric-gateway"]["egress"]
    for name in ("picmetric-triton", "picmetric-redis"):
        peers = [peer for rule in policies[name]["ingress"] for peer in rule["from"]]
        selectors = [peer["podSelector"]["matchLabels"] for peer in peers if "podSelector" in peer]
        assert any(s.items() <= worker_labels.items() for s in selectors), name


def _pod_labels(objects: tuple[Manifest, ...], component: str) -> dict[str, str]:
    labels: dict[str, str] = find(objects, "Deployment", f"-{component}")["spec"]["template"][
        "metadata"
    ]["labels"]
    return labels


def test_no_worker_by_default_and_none_without_a_redis() -> None:
    assert all(not o["metadata"]["name"].endswith("-worker") for o in render())
    result = helm("template", "picmetric", ".", "--set", "worker.enabled=true")
    assert result.returncode != 0
    assert "worker.enabled needs the job queue's Redis" in result.stderr
    never_zero = helm("lint", ".", "--strict", "--set", "worker.autoscaling.minReplicas=0")
    assert never_zero.returncode != 0 and "minReplicas" in never_zero.stdout + never_zero.stderr


def test_workers_trace_to_the_gateways_otlp_endpoint() -> None:
    """With tracing.otlpEndpoint the workers read the gateway's OTEL_* variables (its ConfigMap:
    each job photo a trace, README "Traces") and may reach the receiver."""
    endpoint = "http://otel-collector.monitoring:4318"
    receiver = '{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}'
    objects = render(
        *WORKER,
        *("--set", f"tracing.otlpEndpoint={endpoint}"),
        *("--set-json", f"networkPolicy.egress.otlp.to=[{receiver}]"),
    )
    configmap = find(objects, "ConfigMap", "-gateway")
    assert configmap["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint
    worker = container(find(objects, "Deployment", "-worker"), "worker")
    assert {"configMapRef": {"name": configmap["metadata"]["name"]}} in worker["envFrom"]
    policy = find(objects, "NetworkPolicy", "-worker")
    ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])]
    assert 4318 in ports
