"""The chart as an SRE reads it (issue 30): tokens, read-only roots, Secret rotation, egress,
scaling signals and their alerts, upgrades, delivery. Rendered by the pinned helm and validated
strictly offline (tests/utils/helm.py), as tests/deploy/test_helm.py does."""

from __future__ import annotations

import ipaddress
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.triton.replicas import RESOLVE_S
from tests.deploy.test_helm import (
    PRODUCTION,
    VALUES,
    container,
    find,
    gateway_env,
    pod_spec,
    rule_groups,
)
from tests.utils.commands import run_tool
from tests.utils.helm import CHART, Manifest, helm, load_yaml, render, validate
from tests.utils.promql import ALERTS

DIGEST = "sha256:" + "ab" * 32


def pods(objects: tuple[Manifest, ...]) -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload and bare pod the chart renders, hooks included."""
    found = []
    for manifest in objects:
        if manifest["kind"] == "Pod":
            found.append((manifest["metadata"]["name"], manifest["spec"]))
        elif "template" in (manifest.get("spec") or {}):
            found.append((manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]))
    return found


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
@pytest.mark.parametrize("create", ["true", "false"])
def test_no_pod_mounts_a_service_account_token(values: tuple[str, ...], create: str) -> None:
    """Whatever serviceAccount.create says (false: the namespace's default account, whose
    automount setting the chart does not control), no pod gets a token."""
    objects = render(*values, "--set", f"serviceAccount.create={create}")
    assert len(pods(objects)) >= 4
    for name, spec in pods(objects):
        assert spec["automountServiceAccountToken"] is False, name


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_every_container_has_a_read_only_root_and_a_tmp_of_its_own(values: tuple[str, ...]) -> None:
    objects = render(*values)
    for name, spec in pods(objects):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in [*spec["containers"], *spec.get("initContainers", [])]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, (name, c["name"])
            if c["name"] != "readiness":  # the helm test pod writes nothing
                mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
                assert "emptyDir" in volumes[mounts["/tmp"]], (name, c["name"])
    for manifest in objects:
        validate(manifest)


def _checksums(objects: tuple[Manifest, ...]) -> dict[str, str]:
    return {
        component: find(objects, "Deployment", f"-{component}")["spec"]["template"]["metadata"][
            "annotations"
        ]["checksum/secret"]
        for component in ("triton", "gateway")
    }


def test_a_rotated_secret_rolls_both_deployments_together() -> None:
    """Both pod templates carry the same Secret checksum, which secretChecksum changes: the admin
    key changes on Triton and the gateways in the same rollout."""
    before = _checksums(render())
    after = _checksums(render("--set", "secretChecksum=3f2a9c"))
    assert before["triton"] == before["gateway"] and after["triton"] == after["gateway"]
    assert before["gateway"] != after["gateway"]
    template = (CHART / "templates" / "_helpers.tpl").read_text()
    assert 'lookup "v1" "Secret"' in template  # on a real upgrade, the Secret's own data


def _cidrs(peers: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    return [(p["ipBlock"]["cidr"], p["ipBlock"].get("except", [])) for p in peers if "ipBlock" in p]


def _egress_allows(policy: Manifest, address: str, port: int) -> bool:
    """Whether any egress rule of `policy` lets a connection to address:port out (ipBlock peers
    only: what a fetched URL can name)."""
    ip = ipaddress.ip_address(address)
    for rule in policy["spec"]["egress"]:
        ports = {p["port"] for p in rule.get("ports", [])}
        if ports and port not in ports:
            continue
        for cidr, excepted in _cidrs(rule.get("to", [])):
            network = ipaddress.ip_network(cidr)
            if ip.version == network.version and ip in network:
                if not any(ip in ipaddress.ip_network(e) for e in excepted):
                    return True
    return False


# What an SSRF bypass must not reach: cloud metadata (IPv4 and IPv6), the cluster's private
# ranges, CGNAT (pod networks), loopback.
PRIVATE = [
    "169.254.169.254",
    "fd00:ec2::254",
    "10.96.0.1",
    "172.20.0.10",
    "192.168.1.1",
    "100.64.0.5",
    "127.0.0.1",
    "::1",
    "fe80::1",
    "0.0.0.0",
    "::ffff:10.0.0.1",
]
PUBLIC = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "52.216.0.1"]


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_gateway_egress_is_dns_triton_its_services_and_the_public_internet(
    values: tuple[str, ...],
) -> None:
    objects = render(
        *values,
        "--set-json",
        'networkPolicy.egress.postgres.to=[{"ipBlock":{"cidr":"10.20.0.0/24"}}]',
        "--set-json",
        'networkPolicy.egress.redis.to=[{"podSelector":{"matchLabels":{"app":"redis"}}}]',
    )
    policy = find(objects, "NetworkPolicy", "-gateway")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    rules = policy["spec"]["egress"]
    dns = rules[0]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    triton_labels = find(objects, "Deployment", "-triton")["spec"]["template"]["metadata"]["labels"]
    (triton,) = [r for r in rules if r["ports"] == [{"port": 8001, "protocol": "TCP"}]]
    assert triton["to"][0]["podSelector"]["matchLabels"].items() <= triton_labels.items()
    assert _egress_allows(policy, "10.20.0.7", 5432) and not _egress_allows(policy, "10.20.0.7", 80)
    assert [r for r in rules if r["ports"] == [{"port": 6379, "protocol": "TCP"}]]
    for address in PRIVATE:
        for port in (80, 443, 5432, 6379, 8080):
            allowed = _egress_allows(policy, address, port)
            assert not allowed or address.startswith("10.20."), (address, port)
    for address in PUBLIC:
        assert _egress_allows(policy, address, 443) and _egress_allows(policy, address, 80)
        assert not _egress_allows(policy, address, 22)
    for manifest in objects:
        validate(manifest)
    closed = render(*values, "--set", "networkPolicy.egress.enabled=false")
    assert find(closed, "NetworkPolicy", "-gateway")["spec"]["policyTypes"] == ["Ingress"]


def test_triton_egress_is_dns_and_the_archive_in_s3_only() -> None:
    policy = find(render(), "NetworkPolicy", "-triton")
    for address in PRIVATE:
        assert not _egress_allows(policy, address, 443), address
    assert _egress_allows(policy, PUBLIC[0], 443) and not _egress_allows(policy, PUBLIC[0], 80)
    claim = ("--set", "modelRepository.source=pvc", "--set", "modelRepository.pvc.claimName=m")
    (only_dns,) = find(render(*claim), "NetworkPolicy", "-triton")["spec"]["egress"]
    assert {p["port"] for p in only_dns["ports"]} == {53}


def test_default_deny_and_an_in_cluster_redis_policy_are_options() -> None:
    assert all(not o["metadata"]["name"].endswith("-default-deny") for o in render())
    objects = render(
        "--set",
        "networkPolicy.defaultDeny=true",
        "--set-json",
        'networkPolicy.redis.podLabels={"app.kubernetes.io/name":"redis"}',
    )
    deny = find(objects, "NetworkPolicy", "-default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    redis = find(objects, "NetworkPolicy", "-redis")["spec"]
    assert redis["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "redis"}}
    (allowed,) = redis["ingress"]
    gateway = find(objects, "Deployment", "-gateway")["spec"]["template"]["metadata"]["labels"]
    assert allowed["from"][0]["podSelector"]["matchLabels"].items() <= gateway.items()
    assert allowed["ports"] == [{"port": 6379, "protocol": "TCP"}] and redis["egress"] == []
    for manifest in objects:
        validate(manifest)


def test_redis_url_with_its_password_comes_from_the_secret() -> None:
    objects = render("--set", "gateway.secretKeys.redisUrl=redis-url")
    env = container(find(objects, "Deployment", "-gateway"), "gateway")["env"]
    (redis,) = [e for e in env if e["name"] == "PICMETRIC_REDIS_URL"]
    assert redis["valueFrom"]["secretKeyRef"]["key"] == "redis-url"
    configmap = find(objects, "ConfigMap", "-gateway")["data"]
    assert "PICMETRIC_REDIS_URL" not in configmap
    assert "PICMETRIC_REDIS_URL" in find(render(), "ConfigMap", "-gateway")["data"]


def test_migrations_run_as_the_schema_owner_within_helms_timeout() -> None:
    """The Job uses migrationDatabaseUrl when the Secret has it (the gateway keeps the runtime
    role's databaseUrl), and its deadline ends before helm's default --timeout of 5 minutes."""
    default = find(render(), "Job", "-migrate")["spec"]
    assert default["activeDeadlineSeconds"] < 300
    ((url,),) = [c["env"] for c in default["template"]["spec"]["containers"]]
    assert url["valueFrom"]["secretKeyRef"]["key"] == "database-url"
    objects = render("--set", "gateway.secretKeys.migrationDatabaseUrl=migration-database-url")
    job = find(objects, "Job", "-migrate")["spec"]["template"]["spec"]
    assert job["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["key"] == (
        "migration-database-url"
    )
    gateway = container(find(objects, "Deployment", "-gateway"), "gateway")["env"]
    (runtime,) = [e for e in gateway if e["name"] == "PICMETRIC_DATABASE_URL"]
    assert runtime["valueFrom"]["secretKeyRef"]["key"] == "database-url"


def test_triton_drains_longer_than_the_gateways_re_resolve() -> None:
    """A Triton pod leaving the endpoints keeps serving until every gateway has resolved the
    headless name again (gateway/triton/replicas.py, RESOLVE_S) and the DNS cache (5 s) expired."""
    for values in VALUES.values():
        objects = render(*values)
        triton = container(find(objects, "Deployment", "-triton"), "triton")
        drain = int(triton["lifecycle"]["preStop"]["exec"]["command"][1])
        assert drain >= RESOLVE_S + 5
        spec = pod_spec(objects, "triton")
        exit_timeout = int(
            next(a for a in triton["args"] if a.startswith("--exit-timeout-secs=")).split("=")[1]
        )
        assert spec["terminationGracePeriodSeconds"] > drain + exit_timeout


def test_enabling_autoscaling_keeps_the_live_replica_count() -> None:
    """Under helm template (no cluster) the HPA's Deployments carry no count; on a real upgrade
    the chart reads the live Deployment (lookup) and keeps its count, so turning autoscaling on
    never resets Triton to 1 replica. Only the template can be checked offline."""
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    (replicas,) = re.findall(
        r'define "picmetric.replicas".*?\{\{- end \}\}\n\{\{- end \}\}', helpers, re.S
    )
    assert 'lookup "apps/v1" "Deployment"' in replicas and "max .spec.replicas" in replicas
    for component in ("triton", "gateway"):
        assert "replicas" not in find(render(), "Deployment", f"-{component}")["spec"]
        fixed = render("--set", f"{component}.autoscaling.enabled=false")
        assert find(fixed, "Deployment", f"-{component}")["spec"]["replicas"] >= 1


def test_digests_pull_secrets_priority_runtime_class_and_cluster_domain() -> None:
    objects = render(
        *PRODUCTION,
        *("--set", f"triton.image.digest={DIGEST}", "--set", f"gateway.image.digest={DIGEST}"),
        *("--set-json", 'imagePullSecrets=[{"name":"registry"}]'),
        *("--set", "triton.priorityClassName=inference-critical"),
        *("--set", "gateway.priorityClassName=inference-high"),
        *("--set", "triton.runtimeClassName=nvidia"),
        *("--set", "clusterDomain=corp.internal"),
    )
    for name, spec in pods(objects):
        assert spec["imagePullSecrets"] == [{"name": "registry"}], name
        for c in [*spec["containers"], *spec.get("initContainers", [])]:
            assert c["image"].endswith("@" + DIGEST), (name, c["name"])
    triton, gateway = pod_spec(objects, "triton"), pod_spec(objects, "gateway")
    assert (triton["priorityClassName"], triton["runtimeClassName"]) == (
        "inference-critical",
        "nvidia",
    )
    assert gateway["priorityClassName"] == "inference-high" and "runtimeClassName" not in gateway
    env = gateway_env(objects)
    assert env["PICMETRIC_TRITON_GRPC_URL"].endswith(".inference.svc.corp.internal:8001")
    assert ".svc.corp.internal" in env["PICMETRIC_ALLOWED_HOSTS"]
    assert "cluster.local" not in yaml.safe_dump(list(objects))
    for manifest in objects:
        validate(manifest)


def test_tensorrt_cache_is_an_emptydir_or_a_persistent_claim() -> None:
    def cache(*args: str) -> dict[str, Any]:
        volumes = {v["name"]: v for v in pod_spec(render(*args), "triton")["volumes"]}
        return volumes["trt-cache"]

    assert cache() == {"name": "trt-cache", "emptyDir": {}}
    created = render("--set", "triton.tensorrtCache.create=true")
    claim = find(created, "PersistentVolumeClaim", "-trt-cache")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert cache("--set", "triton.tensorrtCache.create=true")["persistentVolumeClaim"] == {
        "claimName": claim["metadata"]["name"]
    }
    existing = cache("--set", "triton.tensorrtCache.claimName=engines")
    assert existing["persistentVolumeClaim"] == {"claimName": "engines"}
    for manifest in created:
        validate(manifest)


def test_helm_test_pod_checks_the_gateways_readiness() -> None:
    objects = render()
    (pod,) = [o for o in objects if o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = " ".join(pod["spec"]["containers"][0]["command"])
    service = find(objects, "Service", "-gateway")
    assert f"http://{service['metadata']['name']}:8080/readyz" in script
    validate(pod)
    # The gateway's NetworkPolicy lets the test pod in (its component label).
    ingress = find(objects, "NetworkPolicy", "-gateway")["spec"]["ingress"][0]["from"]
    labels = pod["metadata"]["labels"]
    assert any(
        peer.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items()
        and "podSelector" in peer
        for peer in ingress
    )


def test_chart_packages_for_an_oci_registry_and_the_package_renders(tmp_path: Path) -> None:
    """`helm package` makes the archive `helm push oci://...` uploads; it holds the alert rules
    and the dashboard as files (no links), and renders as the folder does."""
    result = helm("package", ".", "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (package,) = tmp_path.glob("picmetric-*.tgz")
    with tarfile.open(package) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for name in ("picmetric/files/alerts.yml", "picmetric/files/picmetric-dashboard.json"):
            assert members[name].isfile() and members[name].size > 100, name
        alerts = tar.extractfile(members["picmetric/files/alerts.yml"])
        assert alerts is not None and alerts.read() == ALERTS.read_bytes()
    rendered = helm("template", "picmetric", str(package), "--namespace", "inference")
    assert rendered.returncode == 0, rendered.stderr
    assert "kind: PrometheusRule" in rendered.stdout


def test_chart_without_its_rule_file_refuses_to_render(tmp_path: Path) -> None:
    """What Flux did to the links: the files gone. The chart fails, naming the file, instead of
    shipping an empty PrometheusRule."""
    copy = tmp_path / "picmetric"
    shutil.copytree(CHART, copy)
    (copy / "files" / "alerts.yml").unlink()
    result = helm("template", "picmetric", str(copy))
    assert result.returncode != 0 and "files/alerts.yml is missing" in result.stderr
    shutil.copy(CHART / "files" / "alerts.yml", copy / "files" / "alerts.yml")
    (copy / "files" / "picmetric-dashboard.json").unlink()
    result = helm("template", "picmetric", str(copy))
    assert result.returncode != 0 and "picmetric-dashboard.json is missing" in result.stderr


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_every_alert_links_its_runbook_entry_in_the_chart_readme() -> None:
    anchors = _anchors((CHART / "README.md").read_text())
    alerts = [r for g in rule_groups(render()) for r in g["rules"] if "alert" in r]
    assert len(alerts) >= 9
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        assert url.startswith("https://github.com/picmetric/picmetric/blob/main/deploy/helm/")
        assert url.split("#")[1] == alert["alert"].lower() in anchors, alert["alert"]


def test_kubernetes_alerts_are_scoped_to_the_release_namespace() -> None:
    (group,) = [g for g in rule_groups(render()) if g["name"] == "picmetric-kubernetes"]
    for rule in group["rules"]:
        assert 'namespace="inference"' in rule["expr"], rule["alert"]
    for rule in [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"]]:
        assert "namespace" in rule["expr"], rule.get("alert") or rule.get("record")


HPA = 'horizontalpodautoscaler="picmetric-triton",namespace="inference"'
OTHER_NAMESPACE = 'picmetric:triton_requests_in_flight:rate1m{namespace="other",pod="t"}'
CONDITION = (
    f"kube_horizontalpodautoscaler_status_condition{{{HPA},"
    'condition="ScalingActive",status="false"}'
)


def test_scaling_alerts_fire_under_promtool(tmp_path: Path) -> None:
    """The rendered Kubernetes group: a scaling metric absent for 10 minutes pages (and not when
    it is there, nor for another namespace's series); an HPA at its maximum for 15 minutes warns;
    one whose ScalingActive condition is false for 10 minutes pages."""
    groups = [g for g in rule_groups(render()) if g["name"] == "picmetric-kubernetes"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    assert "SUCCESS" in run_tool("promtool", "check", "rules", str(tmp_path / "rules.yml"))
    gateway_series = 'picmetric_analyses_in_flight{job="gateway",namespace="inference",pod="g"}'
    tests = [
        {  # only another namespace's Triton signal: absent here
            "interval": "1m",
            "input_series": [
                {"series": OTHER_NAMESPACE, "values": "1x30"},
                {"series": gateway_series, "values": "2x30"},
            ],
            "alert_rule_test": [
                {
                    "eval_time": "5m",
                    "alertname": "PicmetricTritonScalingMetricAbsent",
                    "exp_alerts": [],
                },
                {
                    "eval_time": "12m",
                    "alertname": "PicmetricTritonScalingMetricAbsent",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "page", "namespace": "inference"},
                            "exp_annotations": _annotations(
                                groups, "PicmetricTritonScalingMetricAbsent"
                            ),
                        }
                    ],
                },
                {
                    "eval_time": "12m",
                    "alertname": "PicmetricGatewayScalingMetricAbsent",
                    "exp_alerts": [],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {
                    "series": f"kube_horizontalpodautoscaler_status_current_replicas{{{HPA}}}",
                    "values": "2 3 4x20",
                },
                {
                    "series": f"kube_horizontalpodautoscaler_spec_max_replicas{{{HPA}}}",
                    "values": "4x22",
                },
                {"series": CONDITION, "values": "0x5 1x16"},
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "PicmetricAutoscalerAtMaximum", "exp_alerts": []},
                {
                    "eval_time": "18m",
                    "alertname": "PicmetricAutoscalerAtMaximum",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "warn",
                                "namespace": "inference",
                                "horizontalpodautoscaler": "picmetric-triton",
                            },
                            "exp_annotations": _annotations(
                                groups, "PicmetricAutoscalerAtMaximum", "picmetric-triton"
                            ),
                        }
                    ],
                },
                {
                    "eval_time": "16m",
                    "alertname": "PicmetricAutoscalerCannotReadMetric",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "page",
                                "namespace": "inference",
                                "horizontalpodautoscaler": "picmetric-triton",
                                "condition": "ScalingActive",
                                "status": "false",
                            },
                            "exp_annotations": _annotations(
                                groups, "PicmetricAutoscalerCannotReadMetric", "picmetric-triton"
                            ),
                        }
                    ],
                },
            ],
        },
    ]
    (tmp_path / "test.yml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests})
    )
    assert "SUCCESS" in run_tool("promtool", "test", "rules", "test.yml", cwd=tmp_path)


def _annotations(groups: list[dict[str, Any]], alert: str, hpa: str = "") -> dict[str, str]:
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == alert]
    return {
        k: v.replace("{{ $labels.horizontalpodautoscaler }}", hpa)
        for k, v in rule["annotations"].items()
    }


SRE_BAD_VALUES = {
    "digest not sha256": ("triton.image.digest=latest", "digest"),
    "cluster domain with a slash": ("clusterDomain=cluster.local/x", "clusterDomain"),
    "cache size not a quantity": ("triton.tensorrtCache.size=lots", "size"),
    "internet port out of range": ("networkPolicy.egress.internet.ports={70000}", "ports"),
    "migration deadline over an hour": (
        "migrations.activeDeadlineSeconds=7200",
        "activeDeadlineSeconds",
    ),
    "analyses target not a quantity": (
        "gateway.autoscaling.targetAnalysesInFlight=many",
        "targetAnalysesInFlight",
    ),
}


@pytest.mark.parametrize(
    ("setting", "complaint"), SRE_BAD_VALUES.values(), ids=SRE_BAD_VALUES.keys()
)
def test_values_schema_refuses_bad_sre_values(setting: str, complaint: str) -> None:
    result = helm("template", "picmetric", ".", "--set", setting)
    assert result.returncode != 0 and complaint in result.stderr, result.stderr


def test_gateway_pods_download_only_the_archive_without_weights_when_given() -> None:
    """The gateway reads label files and provenance records, not the networks: with
    modelRepository.s3.metadataUrl its init container fetches that small archive, Triton's the
    whole one; without it both fetch the whole archive."""

    def archive(objects: tuple[Manifest, ...], component: str) -> dict[str, str]:
        (init,) = pod_spec(objects, component)["initContainers"]
        return {e["name"]: e["value"] for e in init["env"]}

    sha = "1" * 64
    objects = render(
        *PRODUCTION,
        *(
            "--set",
            "modelRepository.s3.metadataUrl=s3://acme-picmetric-models/metadata-0.1.0.tar.gz",
        ),
        *("--set", f"modelRepository.s3.metadataSha256={sha}"),
    )
    gateway, triton = archive(objects, "gateway"), archive(objects, "triton")
    assert gateway["MODEL_ARCHIVE_URL"].endswith("/metadata-0.1.0.tar.gz")
    assert gateway["MODEL_ARCHIVE_SHA256"] == sha
    assert triton["MODEL_ARCHIVE_URL"].endswith("/model_repository-0.1.0.tar.gz")
    assert triton["MODEL_ARCHIVE_SHA256"] != sha
    whole = render(*PRODUCTION)
    assert archive(whole, "gateway") == archive(whole, "triton")
    result = helm("template", "picmetric", ".", "--set", "modelRepository.s3.metadataUrl=meta")
    assert result.returncode != 0 and "metadataUrl" in result.stderr
