"""The `picmetric` command: convert models, run Triton, serve."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from picmetric.paths import MODEL_REPOSITORY
from picmetric.triton_server import TritonError, TritonPorts, TritonServer

log = logging.getLogger("picmetric")


def _add_convert(commands: argparse._SubParsersAction) -> None:
    from conversion.registry import converters

    convert = commands.add_parser("convert", help="export models to ONNX into the model repository")
    models = convert.add_subparsers(dest="model", required=True)
    for name, module in [*converters().items(), ("all", None)]:
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
        parser.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
        if module is not None:
            module.add_arguments(parser)


def _add_triton_options(parser: argparse.ArgumentParser) -> None:
    defaults = TritonPorts()
    parser.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--http-port", type=int, default=defaults.http)
    parser.add_argument("--grpc-port", type=int, default=defaults.grpc)
    parser.add_argument("--metrics-port", type=int, default=defaults.metrics)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="picmetric", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_convert(commands)
    triton = commands.add_parser("triton", help="run the local Triton server until interrupted")
    _add_triton_options(triton)
    serve = commands.add_parser("serve", help="run Triton (and the gateway) until interrupted")
    _add_triton_options(serve)
    return parser


def run_convert(args: argparse.Namespace) -> None:
    from conversion.registry import converters

    if args.model != "all":
        converters()[args.model].run(args)
        return
    for name, module in converters().items():
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        module.run(
            argparse.Namespace(**{**vars(parser.parse_args([])), **vars(args), "model": name})
        )


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_triton(args: argparse.Namespace) -> None:
    ports = TritonPorts(args.http_port, args.grpc_port, args.metrics_port)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    server = TritonServer(args.repository, ports)
    try:
        server.start()
        log.info("Serving; press Ctrl+C to stop")
        code = server.wait()
        log.error("Triton exited with code %d.\n%s", code, server.log_tail())
        sys.exit(1)
    except KeyboardInterrupt:
        log.info("Stopping Triton")
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        if args.command == "convert":
            run_convert(args)
        elif args.command in ("triton", "serve"):
            run_triton(args)
    except (TritonError, RuntimeError) as exc:
        log.error("%s", exc)
        sys.exit(1)
