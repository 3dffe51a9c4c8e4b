"""The `picmetric` command: convert models, run the local Triton and the gateway, migrate the
database, answer bulk jobs (a worker), analyse a photo, check the GPU, switch TensorRT or the CPU
engine.

Each command imports what it needs when it runs: the gateway image has no ONNX, TensorFlow or
Triton, and `picmetric --help`, `gateway` and `migrate` must work there."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from core.paths import MODEL_REPOSITORY, cache_dir
from core.settings import CommonSettings
from core.triton_admin import ADMIN_HEADER, GRPC_ADMIN_HEADER, new_admin_key
from picmetric import client_commands
from picmetric.client import ClientError, ExitCode
from picmetric.local_jobs import LocalJobs
from picmetric.supervisor import RestartPolicy
from picmetric.triton_server import TritonPorts

if TYPE_CHECKING:
    from gateway.settings import Settings

log = logging.getLogger("picmetric")

GATEWAY_PORT = 8080  # the seed Flask service's port, which the front end knows


def _add_convert(commands: argparse._SubParsersAction) -> None:
    from conversion.registry import converters

    convert = commands.add_parser("convert", help="export models to ONNX into the model repository")
    models = convert.add_subparsers(dest="model", required=True)
    for name, converter in [*converters().items(), ("all", None)]:
        parser = models.add_parser(name, help=f"convert {name}")
        parser.add_argument(
            "--weights",
            default="auto",
            help="auto (download, random when offline), random, a file path or an http(s) URL",
        )
        parser.add_argument("--seed", type=int, default=0, help="seed for --weights random")
        parser.add_argument(
            "--weights-hash", help="expected 'sha256:<hex>' or 'md5:<hex>' of the file"
        )
        parser.add_argument(
            "--repository", type=Path, default=MODEL_REPOSITORY, help="where the model goes"
        )
        if converter is not None:
            converter.add_arguments(parser)


def _add_triton_options(parser: argparse.ArgumentParser) -> None:
    defaults = TritonPorts()
    parser.add_argument(
        "--repository", type=Path, default=MODEL_REPOSITORY, help="the Triton model repository"
    )
    parser.add_argument("--http-port", type=int, default=defaults.http, help="Triton's HTTP port")
    parser.add_argument("--grpc-port", type=int, default=defaults.grpc, help="Triton's gRPC port")
    parser.add_argument(
        "--metrics-port", type=int, default=defaults.metrics, help="Triton's metrics port"
    )
    parser.add_argument(
        "--triton-host", default=defaults.host, help="Triton's listen address (0.0.0.0: all)"
    )
    parser.add_argument(
        "--triton-max-restarts",
        type=int,
        default=RestartPolicy.max_restarts,
        metavar="N",
        help="when Triton exits it is restarted (backoff 1, 2, 4 … 30 s); give up and exit after "
        "N restarts in a row that did not stay up a minute (default: %(default)s)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the options and that every port is free, then exit (./bootstrap.sh serve "
        "does, before converting the models)",
    )


class UsageError(Exception):
    """A command line argparse refused, raised rather than exited on, so `main` can say it as
    JSON too (a client command's --json)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """argparse's parser (its sub-commands' too), raising `UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="picmetric", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_convert(commands)
    triton = commands.add_parser("triton", help="run the local Triton server until interrupted")
    _add_triton_options(triton)
    serve = commands.add_parser(
        "serve",
        help="run Triton, the gateway and (for bulk jobs) Redis and a worker until interrupted",
    )
    _add_triton_options(serve)
    _add_gateway_options(serve)
    serve.add_argument(
        "--no-jobs",
        action="store_true",
        help="start no Redis and worker when PICMETRIC_REDIS_URL is unset (no bulk jobs)",
    )
    gateway = commands.add_parser("gateway", help="run the gateway alone (Triton runs elsewhere)")
    _add_gateway_options(gateway)
    commands.add_parser(
        "migrate", help="upgrade the database (PICMETRIC_DATABASE_URL) to the newest schema"
    )
    commands.add_parser(
        "worker", help="answer bulk jobs' photos from the queue (PICMETRIC_REDIS_URL) until stopped"
    )
    client_commands.add_commands(commands)
    commands.add_parser("check-gpu", help="say which GPU onnxruntime and Triton can use")
    tensorrt = commands.add_parser(
        "tensorrt", help="switch the GPU deployment's TensorRT FP16 accelerator on or off"
    )
    tensorrt.add_argument(
        "state",
        choices=["on", "off"],
        help="on: the TensorRT FP16 accelerator; off: the committed configs",
    )
    tensorrt.add_argument(
        "--repository", type=Path, default=MODEL_REPOSITORY, help="the configs to switch"
    )
    cpu_engine = commands.add_parser(
        "cpu-engine", help="run the onnxruntime models on ONNX Runtime or OpenVINO (CPU hosts)"
    )
    cpu_engine.add_argument(
        "engine", choices=["onnxruntime", "openvino"], help="the engine the models run on"
    )
    cpu_engine.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="openvino only: bf16 for the networks whose BF16 accuracy is measured and holds "
        "(MTCNN's ONet); the others stay fp32. A CPU without BF16 runs fp32.",
    )
    cpu_engine.add_argument(
        "--models",
        help="comma-separated: switch only these (e.g. the networks this CPU runs faster on "
        "OpenVINO, from `python -m benchmarks.cpu_engines`); the others stay as they are",
    )
    cpu_engine.add_argument(
        "--repository", type=Path, default=MODEL_REPOSITORY, help="the configs to switch"
    )
    _describe(commands)
    return parser


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help that names each option's default, where it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False  # not `in`: 0 == False, and a default of 0 is worth saying
            or default == argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def _describe(commands: argparse._SubParsersAction) -> None:
    """Every command's --help opens with what the command does and names its defaults."""
    for choice in commands._choices_actions:
        parser = commands.choices[choice.dest]
        parser.formatter_class = _DefaultsFormatter
        parser.description = parser.description or choice.help
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _describe(action)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("picmetric")
    except PackageNotFoundError:
        return "(not installed)"


def _add_gateway_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept other machines")
    parser.add_argument("--port", type=int, default=GATEWAY_PORT, help="the gateway's API port")


def run_convert(args: argparse.Namespace) -> None:
    from conversion.registry import converters

    if args.model != "all":
        converters()[args.model].run(args)
        return
    for name, converter in converters().items():
        parser = argparse.ArgumentParser()
        converter.add_arguments(parser)
        converter.run(
            argparse.Namespace(**{**vars(parser.parse_args([])), **vars(args), "model": name})
        )


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _prepared_settings(host: str, local_uploads: bool = False, **overrides: str) -> Settings:
    """The gateway's settings, checked for listening on `host` and with its database schema
    ready (a problem is one clear line here, before any server starts). `local_uploads` (`serve`):
    without a bucket or folder set, uploads are kept in the cache's `uploads/` folder."""
    from gateway.settings import Settings
    from gateway.store.migrate import prepare_schema

    settings = Settings(**overrides)  # type: ignore[arg-type]
    if local_uploads and not settings.s3_bucket and settings.upload_dir is None:
        settings = settings.model_copy(update={"upload_dir": cache_dir() / "uploads"})
    settings.check_exposure(host)
    prepare_schema(settings.database_url, upgrade=settings.migrate_on_start)
    return settings


def run_gateway(args: argparse.Namespace, settings: Settings | None = None) -> None:
    """The API on --host:--port and, in the same process and event loop, the operations port
    (Settings.ops_host:ops_port: /metrics and the readiness report): one uvicorn server with two
    listening sockets, so one lifespan, one SIGTERM and one graceful shutdown serve both."""
    import uvicorn

    from gateway.main import ByPort, create_app, create_ops_app

    settings = settings or _prepared_settings(args.host)
    _check_ops_port(settings, args.port)
    api = create_app(settings, schema_prepared=True)
    app = ByPort(api, {settings.ops_port: create_ops_app(api, settings)})
    log.info("Gateway listening on http://%s:%d (API docs at /docs)", args.host, args.port)
    log.info(
        "Operations (/metrics, /readyz with every replica) on http://%s:%d",
        settings.ops_host,
        settings.ops_port,
    )
    # SIGTERM: uvicorn stops accepting, closes idle connections and waits this long for the
    # requests in flight (`serve` stops Triton only after that).
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        timeout_graceful_shutdown=round(settings.shutdown_timeout_s),
    )
    ops = uvicorn.Config(app, host=settings.ops_host, port=settings.ops_port, log_config=None)
    uvicorn.Server(config).run(sockets=[config.bind_socket(), ops.bind_socket()])


def _check_ops_port(settings: Settings, port: int) -> None:
    if settings.ops_port == port:
        raise ValueError(
            f"PICMETRIC_OPS_PORT ({settings.ops_port}) must differ from the API's --port: the "
            "operations port serves /metrics and the readiness report, which the API does not."
        )


def run_servers(args: argparse.Namespace, with_gateway: bool) -> None:
    """Triton until ready, then (with_gateway) the gateway in this process, under uvicorn in the
    main thread, and for bulk jobs a Redis and a worker of its own unless PICMETRIC_REDIS_URL
    names one (or --no-jobs); a watcher thread restarts Triton whenever it exits. Ctrl+C or
    SIGTERM stops them all, Triton last; this returns once Triton and its model processes are
    gone."""
    from picmetric.supervisor import TritonSupervisor
    from picmetric.triton_server import TritonServer

    _check_ports(args, with_gateway)
    if args.check:
        log.info("The options are valid and every port is free")
        return
    ports = TritonPorts(args.http_port, args.grpc_port, args.metrics_port, args.triton_host)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    admin_key = _triton_admin_key(with_gateway, ports.http)
    server = TritonServer(args.repository, ports, admin_key=admin_key)
    supervisor = TritonSupervisor(
        server,
        RestartPolicy(max_restarts=args.triton_max_restarts),
        # the main thread is in uvicorn or waiting: a SIGTERM to ourselves stops either
        on_give_up=lambda: os.kill(os.getpid(), signal.SIGTERM),
    )
    settings = None
    jobs = LocalJobs()
    if with_gateway:
        # The gateway reads the weights' provenance from the repository Triton serves.
        overrides = {
            "triton_grpc_url": server.grpc_url,
            "triton_admin_key": server.admin_key,
            "model_repository": str(args.repository),
        }
        settings = _prepared_settings(args.host, local_uploads=True, **overrides)
        if settings.redis_url is None and not args.no_jobs:
            # The gateway counts its rate limits (PICMETRIC_RATE_LIMIT) in this Redis too.
            settings = settings.model_copy(update={"redis_url": jobs.start_redis()})
    try:
        supervisor.start()
        if settings is not None and jobs.url is not None:
            worker_env = {
                "PICMETRIC_REDIS_URL": jobs.url,
                "PICMETRIC_TRITON_GRPC_URL": server.grpc_url,
                "PICMETRIC_TRITON_ADMIN_KEY": server.admin_key,
                "PICMETRIC_MODEL_REPOSITORY": str(args.repository),
            }
            if settings.upload_dir is not None:  # a job over this gateway's kept uploads
                worker_env["PICMETRIC_UPLOAD_DIR"] = str(settings.upload_dir)
            jobs.start_worker(worker_env)
        if settings is not None:
            run_gateway(args, settings)
        else:
            log.info("Serving; press Ctrl+C to stop")
            while not supervisor.gave_up.wait(1.0):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        jobs.stop()
        log.info("Stopping Triton")
        supervisor.stop()
        log.info("Triton stopped; its ports are free")
    if supervisor.gave_up.is_set():
        log.error(
            "Gave up on Triton after %d restart(s): it kept failing (why is above; its whole log: "
            "%s)",
            supervisor.restarts,
            server.log_file,
        )
        sys.exit(1)


def _check_ports(args: argparse.Namespace, with_gateway: bool) -> None:
    """Every port `serve` (or `triton`) listens on is free, before anything starts: a ValueError
    naming the option that changes a taken one. SO_REUSEADDR, as servers bind: a stopped
    server's connections in TIME_WAIT do not count, a listening socket does. The gateway's
    settings are checked too: valid, the API and operations ports apart, and no listening
    beyond loopback without API keys."""
    wanted = [
        ("Triton's HTTP", "--http-port", args.triton_host, args.http_port),
        ("Triton's gRPC", "--grpc-port", args.triton_host, args.grpc_port),
        ("Triton's metrics", "--metrics-port", args.triton_host, args.metrics_port),
    ]
    if with_gateway:
        from gateway.settings import Settings

        settings = Settings()
        settings.check_exposure(args.host)
        _check_ops_port(settings, args.port)
        wanted += [
            ("The gateway's", "--port", args.host, args.port),
            ("The operations", "PICMETRIC_OPS_PORT", settings.ops_host, settings.ops_port),
        ]
    for what, option, host, port in wanted:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise ValueError(
                    f"{what} port {port} on {host} is taken ({exc.strerror}): stop what uses it "
                    f"(another picmetric serve?) or choose another with {option}."
                ) from exc


def _triton_admin_key(with_gateway: bool, http_port: int) -> str:
    """The key that locks Triton's admin API: PICMETRIC_TRITON_ADMIN_KEY, else a new one per run
    (`serve` hands it to its gateway; `triton` alone writes it to a file only its user reads)."""
    key = CommonSettings().triton_admin_key
    if with_gateway:
        return key or new_admin_key()
    where = "PICMETRIC_TRITON_ADMIN_KEY"
    if not key:
        key = new_admin_key()
        path = cache_dir() / f"triton-admin-key-{http_port}"
        path.unlink(missing_ok=True)
        path.touch(mode=0o600)
        path.write_text(key + "\n")
        where = f"{path} (made for this run; set PICMETRIC_TRITON_ADMIN_KEY to choose one)"
    log.info(
        "Triton's admin API (model load/unload, shared memory, trace, logging) is locked: send "
        "header %s (gRPC: %s) with the key in %s; the gateway takes it as "
        "PICMETRIC_TRITON_ADMIN_KEY",
        ADMIN_HEADER,
        GRPC_ADMIN_HEADER,
        where,
    )
    return key


def run_migrate() -> None:
    from gateway.settings import Settings
    from gateway.store.migrate import upgrade_schema

    upgrade_schema(Settings().database_url)


def run_worker() -> None:
    """One job worker (gateway/jobs/worker.py) on the gateway's settings, until SIGTERM."""
    from gateway.jobs import worker
    from gateway.settings import Settings

    settings = Settings()
    if not settings.redis_url:
        raise ValueError("A job worker takes its photos from Redis: set PICMETRIC_REDIS_URL.")
    worker.run(settings)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {exc}", file=sys.stderr)
        if argv and argv[0] in client_commands.COMMANDS and "--json" in argv:
            client_commands.fail(argv[0], ClientError(str(exc), ExitCode.USAGE), as_json=True)
        sys.exit(ExitCode.USAGE)
    if args.command in client_commands.COMMANDS:
        sys.exit(client_commands.run(args))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for chatty in ("httpx", "alembic"):  # our own lines say what they do
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        if args.command == "convert":
            run_convert(args)
        elif args.command in ("triton", "serve"):
            run_servers(args, with_gateway=args.command == "serve")
        elif args.command == "gateway":
            run_gateway(args)
        elif args.command == "migrate":
            run_migrate()
        elif args.command == "worker":
            run_worker()
        elif args.command == "check-gpu":
            from picmetric import gpu

            print("\n".join(gpu.report()))
        elif args.command == "tensorrt":
            from picmetric import tensorrt

            changed = tensorrt.switch(args.repository, args.state == "on")
            log.info("TensorRT %s: %d config(s) changed", args.state, len(changed))
        elif args.command == "cpu-engine":
            from picmetric import cpu_engine

            if args.engine == "onnxruntime" and args.precision != "fp32":
                raise ValueError("ONNX Runtime's CPU kernels run fp32 only; leave out --precision.")
            models = args.models.split(",") if args.models else None
            switched = cpu_engine.switch(args.repository, args.engine, args.precision, models)
            for path, runs in switched.items():
                log.info("%s: %s", path.parent.name, runs)
            for model, why in cpu_engine.kept_fp32(args.repository, args.precision).items():
                if models is None or model in models:
                    log.info("%s stays FP32: %s", model, why)
            log.info("CPU engine %s: %d config(s) changed", args.engine, len(switched))
    except (RuntimeError, ValueError) as exc:  # ours (TritonError too) say what to do
        problems = _invalid_settings(exc)
        if problems is not None:
            log.error("Invalid settings: %s", problems)
            sys.exit(2)
        log.error("%s", exc)
        sys.exit(1)


def _invalid_settings(exc: Exception) -> str | None:
    """One line per PICMETRIC_* setting that makes no sense, when `exc` is pydantic's
    ValidationError; None otherwise. pydantic is the gateway's: the convert image has none, and
    an error cannot come from it unless something imported it."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not isinstance(exc, pydantic.ValidationError):
        return None
    return "; ".join(
        f"PICMETRIC_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
    )
