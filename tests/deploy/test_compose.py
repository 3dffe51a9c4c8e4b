"""docker-compose.yml, parsed: no Docker engine runs here, so check what it says."""

from __future__ import annotations

import re

import pytest
import yaml

from core.paths import PROJECT_ROOT
from core.triton_admin import restricted_api_args
from core.triton_trace import trace_args
from gateway.settings import Settings
from picmetric.triton_server import TritonServer

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
BUILT = {"gateway", "migrate", "convert", "worker"}
ONE_SHOT = {"migrate", "convert", "trt-cache-owner"}
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?)([-?])([^{}]*))?\}")


def interpolate(value: object, env: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}` (the default only when NAME is
    unset, not when it is empty) and `${NAME:?error}` against .env's `env`; an unset or empty
    NAME with `:?` is compose's refusal to start (ValueError here)."""

    def one(match: re.Match[str]) -> str:
        name, colon, kind, text = match.groups()
        if env.get(name) or (name in env and not colon and kind):
            return env[name]
        if kind == "?":
            raise ValueError(f"{name}: {text}")
        return text if kind == "-" else ""

    text, previous = str(value), None
    while text != previous:  # nested defaults (${A-${B}}): the innermost first
        text, previous = VARIABLE.sub(one, text), text
    return text


def gateway_settings(env: dict[str, str]) -> Settings:
    """The gateway's settings as compose starts it with this .env."""
    environment = SERVICES["gateway"]["environment"]
    values = {name: interpolate(value, env) for name, value in environment.items()}
    return Settings(**{name.removeprefix("PICMETRIC_").lower(): v for name, v in values.items()})


def test_compose_has_every_service() -> None:
    assert set(SERVICES) == {
        "triton",
        "gateway",
        "worker",
        "migrate",
        "postgres",
        "prometheus",
        "grafana",
        "convert",
        "redis",
        "trt-cache-owner",
        "tls",
        "jaeger",
    }


@pytest.mark.parametrize("name", sorted(set(SERVICES) - BUILT))
def test_pulled_images_are_pinned(name: str) -> None:
    image = interpolate(SERVICES[name]["image"], {})
    assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+[\w.-]*", image), f"{name}: {image} is not pinned"
    digest = "@sha256:" + "ab" * 32
    pinned = interpolate(SERVICES[name]["image"], {"PICMETRIC_TRITON_DIGEST": digest})
    assert pinned in (image, image + digest)


def test_built_images_come_from_the_repository_dockerfile() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    for name in BUILT:
        target = SERVICES[name]["build"]["target"]
        assert f" AS {target}" in dockerfile


def test_triton_reserves_a_gpu_and_mounts_the_repository_read_only() -> None:
    triton = SERVICES["triton"]
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "./model_repository:/models:ro" in triton["volumes"]
    assert triton["shm_size"] and triton["restart"] == "unless-stopped"
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    # No port on the host unless the overlay publishes them, on loopback.
    assert "ports" not in triton
    overlay = yaml.safe_load((PROJECT_ROOT / "docker-compose.triton-ports.yml").read_text())
    assert {_published(p)[0] for p in overlay["services"]["triton"]["ports"]} == {"127.0.0.1"}


def test_triton_loads_every_model_under_explicit_control_as_locally() -> None:
    """The gateway reloads a model whose Python stub died (gateway/triton/repair.py) through
    Triton's repository API, which needs explicit model control; --load-model=* still loads every
    model at start. The local launcher runs Triton the same way."""
    flags = {"--model-control-mode=explicit", "--load-model=*"}
    assert flags <= set(SERVICES["triton"]["command"])
    local, _ = TritonServer().command()
    assert flags <= set(local)


def test_gateway_waits_for_healthy_triton_and_checks_readyz() -> None:
    gateway = SERVICES["gateway"]
    assert gateway["depends_on"]["triton"]["condition"] == "service_healthy"
    assert gateway["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["environment"]["PICMETRIC_TRITON_GRPC_URL"] == "triton:8001"
    assert "0.0.0.0:8080:8080" in [interpolate(p, {}) for p in gateway["ports"]]


def test_every_long_running_service_has_a_healthcheck_and_restarts() -> None:
    for name, service in SERVICES.items():
        if name not in ONE_SHOT:
            assert "healthcheck" in service, name
            assert service["restart"] == "unless-stopped", name


def test_the_worker_answers_jobs_with_the_gateways_image_settings_and_redis() -> None:
    """`picmetric worker` with every setting the gateway has (one YAML anchor), from a Redis that
    keeps its queue in an append-only file on a volume."""
    worker, gateway = SERVICES["worker"], SERVICES["gateway"]
    assert worker["command"] == ["picmetric", "worker"]
    assert worker["image"] == gateway["image"] and worker["build"] == gateway["build"]
    assert gateway["environment"].items() <= worker["environment"].items()
    for needed in ("triton", "postgres", "redis"):
        assert worker["depends_on"][needed]["condition"] == "service_healthy"
    redis = SERVICES["redis"]
    assert "--appendonly yes --dir /data" in " ".join(redis["command"])
    assert "redis-data:/data" in redis["volumes"] and "redis-data" in COMPOSE["volumes"]


def test_migrate_runs_once_with_the_gateway_image_before_the_gateway() -> None:
    migrate, gateway = SERVICES["migrate"], SERVICES["gateway"]
    assert migrate["image"] == gateway["image"] and migrate["build"] == gateway["build"]
    assert migrate["command"] == ["picmetric", "migrate"]
    assert migrate["restart"] == "no" and "profiles" not in migrate
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    url = "PICMETRIC_DATABASE_URL"
    # The same database, another role: the schema's owner migrates, the gateway only uses it.
    runtime = interpolate(gateway["environment"][url], DOT_ENV)
    owner = interpolate(migrate["environment"][url], DOT_ENV)
    assert runtime.split("@")[1] == owner.split("@")[1]
    assert runtime.startswith("postgresql+psycopg2://picmetric_app:app-pw@")
    assert owner.startswith("postgresql+psycopg2://picmetric:pw@")
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert gateway["environment"]["PICMETRIC_MIGRATE_ON_START"] == "false"


def test_state_lives_in_named_volumes() -> None:
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    assert {"pgdata", "prometheus-data", "grafana-data"} <= set(COMPOSE["volumes"])


def test_convert_is_a_one_shot_profile_writing_the_repository() -> None:
    convert = SERVICES["convert"]
    assert convert["profiles"] == ["convert"]
    assert "./model_repository:/app/model_repository" in convert["volumes"]


def _secret_settings() -> list[tuple[str, str, str]]:
    """Environment entries that name a password, secret, token or key, or hold a URL with
    credentials (user:password@host)."""
    return [
        (name, key, str(value))
        for name, service in SERVICES.items()
        for key, value in (service.get("environment") or {}).items()
        if re.search(r"PASSWORD|SECRET|TOKEN|KEY", key) or ":" in str(value) and "@" in str(value)
    ]


def test_secret_settings_are_recognised_by_name_and_by_url() -> None:
    found = {(service, key) for service, key, _ in _secret_settings()}
    assert {("postgres", "POSTGRES_PASSWORD"), ("gateway", "PICMETRIC_DATABASE_URL")} <= found


@pytest.mark.parametrize(("service", "key", "value"), _secret_settings())
def test_no_secret_is_written_inline(service: str, key: str, value: str) -> None:
    assert "${" in value, f"{service}.{key} must come from the environment (.env)"


# Published on every interface by default: the gateway (API keys) and the optional TLS front
# (profile tls) only; Grafana is on loopback unless GRAFANA_BIND says otherwise.
PUBLIC = {"gateway": {"8080"}, "tls": {"80", "443"}}


def _published(port: object) -> tuple[str, str]:
    """(host address, host port) of a short-syntax `ports` entry; no address means all."""
    parts = interpolate(port, {}).split(":")
    if len(parts) == 3:
        return parts[0], parts[1]
    assert len(parts) == 2, f"{port}: publish as HOST_PORT:PORT or ADDRESS:HOST_PORT:PORT"
    return "0.0.0.0", parts[0]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_only_the_gateway_and_the_tls_front_are_published_on_all_interfaces(name: str) -> None:
    for port in SERVICES[name].get("ports", []):
        address, host_port = _published(port)
        if address != "127.0.0.1":
            assert host_port in PUBLIC.get(name, set()), f"{name} publishes {port} to the world"
    assert "password" in str(SERVICES["grafana"]["environment"]).lower()


def test_unauthenticated_services_listen_on_loopback_only() -> None:
    addresses = {_published(port)[0] for port in SERVICES["prometheus"]["ports"]}
    assert addresses == {"127.0.0.1"}
    for name in ("triton", "postgres", "redis"):
        assert "ports" not in SERVICES[name], name


def test_prometheus_scrapes_the_gateways_operations_port_which_is_published_on_loopback() -> None:
    """/metrics and the readiness report are on the gateway's operations port, which Prometheus
    scrapes on the compose network and the host reaches on loopback only; the public port is
    the API's alone."""
    settings = gateway_settings(DOT_ENV)
    assert settings.ops_host == "0.0.0.0"  # in the container: for Prometheus on the network
    prometheus = yaml.safe_load((PROJECT_ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "gateway"]
    assert job["static_configs"] == [{"targets": [f"gateway:{settings.ops_port}"]}]
    published = {_published(port)[1]: _published(port)[0] for port in SERVICES["gateway"]["ports"]}
    assert published == {"8080": "0.0.0.0", str(settings.ops_port): "127.0.0.1"}


DOT_ENV = {
    "POSTGRES_PASSWORD": "pw",
    "POSTGRES_APP_PASSWORD": "app-pw",
    "REDIS_PASSWORD": "r3dis",
    "PICMETRIC_TRITON_ADMIN_KEY": "k3y",
}


def test_triton_admin_api_is_locked_with_the_key_in_dot_env() -> None:
    """The flags the local Triton runs with (tests/picmetric/test_triton_admin.py), with .env's
    key; the gateway's repair gets the same key; without it compose refuses to start."""
    command = [interpolate(arg, DOT_ENV) for arg in SERVICES["triton"]["command"]]
    assert set(restricted_api_args("k3y")) <= set(command)
    assert gateway_settings({**DOT_ENV, "PICMETRIC_API_KEYS": "a"}).triton_admin_key == "k3y"
    for arg in SERVICES["triton"]["command"][-2:]:
        with pytest.raises(ValueError, match="PICMETRIC_TRITON_ADMIN_KEY in .env"):
            interpolate(arg, {k: v for k, v in DOT_ENV.items() if "TRITON" not in k})


def test_compose_gateway_is_closed_unless_anonymous_access_is_asked_for() -> None:
    """The gateway listens on 0.0.0.0 in its container: with no key in .env it refuses to start;
    PICMETRIC_ALLOW_ANONYMOUS=true in .env lets it run open."""
    keyed = gateway_settings({**DOT_ENV, "PICMETRIC_API_KEYS": "key-one,key-two"})
    assert keyed.api_keys == ["key-one", "key-two"] and not keyed.allow_anonymous
    keyed.check_exposure("0.0.0.0")
    with pytest.raises(ValueError, match="without API keys"):
        gateway_settings(DOT_ENV).check_exposure("0.0.0.0")
    gateway_settings({**DOT_ENV, "PICMETRIC_ALLOW_ANONYMOUS": "true"}).check_exposure("0.0.0.0")


def _seconds(duration: str) -> float:
    """A compose duration such as 70s, 30m or 1m30s."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


# Not measured here (no GPU with the NGC image): TensorRT builds of ResNet50 and the YOLOv3
# backbone in FP16 take minutes each; the budget leaves room for a slow GPU and parallel loads.
FIRST_TENSORRT_BUILD_S = 20 * 60


def test_triton_health_budget_covers_a_first_tensorrt_build() -> None:
    """The warm-up at load builds the engines (model_warmup in the configs), so the first start
    with TensorRT is not ready for minutes; compose must not call it unhealthy meanwhile."""
    check = SERVICES["triton"]["healthcheck"]
    budget = _seconds(check["start_period"]) + _seconds(check["interval"]) * check["retries"]
    assert budget >= FIRST_TENSORRT_BUILD_S


def test_shutdown_gives_the_longest_analysis_time_before_sigkill() -> None:
    """The gateway finishes what it runs (uvicorn's graceful shutdown), Triton its in-flight
    inferences (--exit-timeout-secs), each within its stop_grace_period; the longest analysis
    is the fetch, Triton (its one retry included) and keeping the upload."""
    settings = Settings()
    longest = settings.fetch_timeout_s + settings.triton_timeout_s + settings.s3_timeout_s
    gateway, triton = SERVICES["gateway"], SERVICES["triton"]
    drain = float(gateway["environment"]["PICMETRIC_SHUTDOWN_TIMEOUT_S"])
    assert drain >= longest
    assert _seconds(gateway["stop_grace_period"]) > drain
    (exit_timeout,) = [
        int(arg.split("=")[1])
        for arg in triton["command"]
        if arg.startswith("--exit-timeout-secs=")
    ]
    assert exit_timeout >= settings.triton_timeout_s
    assert _seconds(triton["stop_grace_period"]) > exit_timeout


def test_compose_counts_rate_limits_in_its_redis_unless_told_not_to() -> None:
    env = {**DOT_ENV, "PICMETRIC_API_KEYS": "a"}
    assert gateway_settings(env).redis_url == "redis://:r3dis@redis:6379/0"
    assert gateway_settings({**env, "PICMETRIC_REDIS_URL": ""}).redis_url is None  # no limits
    assert SERVICES["gateway"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    redis = SERVICES["redis"]
    assert "ports" not in redis, "Redis stays inside compose's network"
    # The password reaches redis-server on stdin, never in its argv.
    script = redis["command"][-1]
    assert "requirepass" in script and "redis-server -" in script and "--maxmemory" in script
    assert "REDIS_PASSWORD" not in script.split("redis-server")[1]
    assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"])
    with pytest.raises(ValueError, match="REDIS_PASSWORD"):
        gateway_settings({k: v for k, v in env.items() if k != "REDIS_PASSWORD"})


LONG_RUNNING = sorted(set(SERVICES) - ONE_SHOT - {"convert"})


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_service_rotates_its_log_and_has_a_memory_limit(name: str) -> None:
    service = SERVICES[name]
    assert service["logging"]["driver"] == "json-file", name
    assert service["logging"]["options"]["max-size"] and service["logging"]["options"]["max-file"]
    assert interpolate(service["mem_limit"], {}), name


def test_triton_runs_as_its_user_without_privileges_on_a_read_only_root() -> None:
    """Issue 30: a local user must not reach Triton's admin API, and Triton itself runs as the
    NGC image's triton-server (uid 1000) with no capabilities, no setuid gains and a read-only
    root; its engine cache volume is chowned once by a one-shot with CAP_CHOWN only."""
    triton = SERVICES["triton"]
    assert triton["user"] == "1000:1000"
    assert triton["cap_drop"] == ["ALL"] and "cap_add" not in triton
    assert "no-new-privileges:true" in triton["security_opt"]
    assert triton["read_only"] is True and triton["tmpfs"]
    owner = SERVICES["trt-cache-owner"]
    assert triton["depends_on"]["trt-cache-owner"]["condition"] == "service_completed_successfully"
    assert owner["cap_add"] == ["CHOWN"] and owner["network_mode"] == "none"
    assert owner["entrypoint"] == ["chown", "1000:1000", "/cache/tensorrt"]
    assert owner["image"] == triton["image"]


@pytest.mark.parametrize("name", ["gateway", "migrate", "redis"])
def test_our_services_have_read_only_roots_and_no_capabilities(name: str) -> None:
    service = SERVICES[name]
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    if name == "redis":  # its command is `sh -c`, which skips the entrypoint's drop of root
        assert service["user"] == "redis"
    assert "no-new-privileges:true" in service["security_opt"]


def test_grafana_is_on_loopback_unless_asked_and_tls_is_an_optional_front() -> None:
    (grafana,) = SERVICES["grafana"]["ports"]
    assert _published(grafana)[0] == "127.0.0.1"
    assert interpolate(grafana, {"GRAFANA_BIND": "0.0.0.0"}).startswith("0.0.0.0:")
    tls = SERVICES["tls"]
    assert tls["profiles"] == ["tls"] and tls["image"].startswith("caddy:")
    assert tls["command"][-2:] == ["--to", "gateway:8080"]
    with pytest.raises(ValueError, match="PICMETRIC_PUBLIC_HOST"):
        interpolate(" ".join(tls["command"]), {})
    gateway_port = SERVICES["gateway"]["ports"][0]
    assert interpolate(gateway_port, {"PICMETRIC_GATEWAY_BIND": "127.0.0.1"}).startswith("127.")


@pytest.mark.parametrize("name", ["gateway", "migrate"])
def test_database_url_says_its_sslmode(name: str) -> None:
    url = interpolate(SERVICES[name]["environment"]["PICMETRIC_DATABASE_URL"], DOT_ENV)
    assert url.endswith("?sslmode=disable")  # compose's own network; set require for RDS
    remote = interpolate(
        SERVICES[name]["environment"]["PICMETRIC_DATABASE_URL"],
        {**DOT_ENV, "PICMETRIC_DB_SSLMODE": "verify-full"},
    )
    assert remote.endswith("?sslmode=verify-full")


def test_postgres_makes_the_runtime_role_on_first_start() -> None:
    postgres = SERVICES["postgres"]
    (script,) = [v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v]
    text = (PROJECT_ROOT / script.split(":")[0]).read_text()
    assert "CREATE ROLE picmetric_app" in text and "ALTER DEFAULT PRIVILEGES" in text
    assert "CREATE ON SCHEMA" in text  # revoked: the runtime role cannot create tables


def test_the_gateway_and_triton_trace_to_jaeger_which_grafana_reads() -> None:
    """Both export to Jaeger's OTLP/HTTP port by the standard variables (the gateway) and the
    flags the local Triton gets from them (Triton); Grafana has Jaeger as a data source; Jaeger's
    UI, which has no authentication, is on loopback only."""
    environment = SERVICES["gateway"]["environment"]
    env = {k: interpolate(v, {}) for k, v in environment.items() if k.startswith("OTEL_")}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert 0 < float(env["OTEL_TRACES_SAMPLER_ARG"]) <= 1
    assert (
        interpolate(
            SERVICES["gateway"]["environment"]["OTEL_TRACES_SAMPLER_ARG"],
            {"OTEL_TRACES_SAMPLER_ARG": "0"},
        )
        == "0"
    )
    flags = trace_args({"OTEL_EXPORTER_OTLP_ENDPOINT": env["OTEL_EXPORTER_OTLP_ENDPOINT"]})
    command = SERVICES["triton"]["command"]
    assert [a for a in command if a.startswith("--trace-config")] == flags
    assert {_published(port)[0] for port in SERVICES["jaeger"]["ports"]} == {"127.0.0.1"}
    sources = yaml.safe_load(
        (PROJECT_ROOT / "deploy/grafana/provisioning/datasources/jaeger.yml").read_text()
    )
    (jaeger,) = sources["datasources"]
    assert (jaeger["type"], jaeger["url"]) == ("jaeger", "http://jaeger:16686")
