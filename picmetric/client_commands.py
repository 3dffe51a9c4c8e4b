"""The commands that talk to a running gateway (`analyze`, `show`, `models`) and `samples`, which
writes photos to try them on: their options, and what they print. Results go to stdout (a
summary for a person, or JSON with --json); messages and the progress bar to stderr, without log
prefixes; a failure exits with its `client.ExitCode`, as JSON on stdout with --json."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from core.settings import ClientSettings
from picmetric import client, jobs_client
from picmetric.client import ClientError, ExitCode

COMMANDS = ("analyze", "show", "models", "samples", "jobs")
INTERRUPTED = 130  # Ctrl+C, as a shell reports a command SIGINT stopped
# scikit-image's photos that `picmetric samples` writes, by file name: the README's examples.
SAMPLES = {
    "astronaut.jpg": "astronaut",  # a face and a person
    "chelsea.jpg": "chelsea",  # a cat
    "coffee.jpg": "coffee",  # a cup on a table
    "rocket.jpg": "rocket",  # a rocket on its pad, a street lamp
}


def _add_connection(parser: argparse.ArgumentParser, settings: ClientSettings) -> None:
    parser.add_argument(
        "--gateway",
        default=settings.gateway,
        metavar="URL",
        help="the gateway's address (or PICMETRIC_GATEWAY)",
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        # Not the setting as its default: --help would print the key.
        help="sent as X-API-Key (default: PICMETRIC_API_KEY, else none)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON (errors too) instead of a summary"
    )


def _add_analysis_options(parser: argparse.ArgumentParser) -> None:
    """The options of /v1/analyze that a command passes on (`_options` reads them)."""
    parser.add_argument(
        "--models", help="comma-separated, e.g. resnet50,yolov3 (default: every ready model)"
    )
    parser.add_argument(
        "--threshold", type=float, help="minimum confidence, 0 to 1 (default: the gateway's, 0.2)"
    )
    parser.add_argument(
        "--max-results", type=int, help="ImageNet labels, at most (default: the gateway's, 10)"
    )
    parser.add_argument(
        "--min-face-size",
        metavar="SIZE",
        help="the smallest face MTCNN looks for: pixels, e.g. 40px, or a share of the photo's "
        "short side, e.g. 2%% (default: 20px)",
    )


def add_commands(commands: argparse._SubParsersAction) -> None:
    settings = ClientSettings()
    analyze = commands.add_parser(
        "analyze",
        help="analyse photos through a running gateway: files, folders, globs or URLs",
        description="Analyse photos through a running gateway. One photo goes to /v1/analyze "
        "(or /v1/annotate with --draw); several, a folder (its photos, sub-folders included) or a "
        "glob go to /v1/batch in chunks, one summary (or JSON line, --json) per photo. Exit "
        "codes: 0 done, 2 usage, 3 a photo or option refused, 4 the API key refused, "
        "5 the gateway unavailable, 1 anything else.",
    )
    analyze.add_argument(
        "photos", nargs="+", metavar="PHOTO", help="a file, a folder, a glob, or an http(s)/s3 URL"
    )
    _add_connection(analyze, settings)
    _add_analysis_options(analyze)
    analyze.add_argument(
        "--no-cache",
        action="store_true",
        help="run the models even when the gateway has the answer stored",
    )
    analyze.add_argument(
        "--draw",
        type=Path,
        metavar="FILE",
        help="one photo only: save it with the detections drawn, in the format FILE's extension "
        "names (.jpg, .png, .webp, ...)",
    )
    analyze.add_argument(
        "--blur-faces",
        action="store_true",
        help="with --draw: blur every face and draw nothing over it",
    )
    analyze.add_argument(
        "--batch-size",
        type=int,
        default=client.BATCH_IMAGES,
        metavar="N",
        help="photos per /v1/batch request, at most the gateway's PICMETRIC_MAX_BATCH_IMAGES",
    )
    show = commands.add_parser(
        "show",
        help="print a stored analysis by its id",
        description="Print the analysis with this id, as the gateway stored it for this API key.",
    )
    show.add_argument("id", help="the analysis' id, as `analyze` printed it")
    _add_connection(show, settings)
    models = commands.add_parser(
        "models",
        help="list the gateway's models: readiness, version and weights",
        description="The gateway's models: Triton model and version, ready or not, and the kind "
        "of weights (pretrained, file or random: random weights answer noise).",
    )
    _add_connection(models, settings)
    samples = commands.add_parser(
        "samples",
        help="write scikit-image's sample photos to try the gateway on",
        description=f"Write scikit-image's photos ({', '.join(SAMPLES)}) as JPEG files into "
        "FOLDER (made if missing), the ones the README's examples use.",
    )
    samples.add_argument(
        "folder",
        nargs="?",
        type=Path,
        default=Path("."),
        help="where to write them (default: the current folder)",
    )
    _add_jobs(commands, settings)


def _add_jobs(commands: argparse._SubParsersAction, settings: ClientSettings) -> None:
    jobs = commands.add_parser(
        "jobs",
        help="bulk analysis jobs through a running gateway",
        description="Bulk analysis jobs (/v1/jobs): submit a bucket prefix, a manifest, URLs or "
        "a local folder and follow its progress; a job's state, the key's jobs, cancel, results.",
    )
    actions = jobs.add_subparsers(dest="action", required=True)
    submit = actions.add_parser(
        "submit", help="analyse a bucket prefix, a manifest, URLs or a folder"
    )
    submit.add_argument(
        "source",
        nargs="+",
        help="s3://bucket/prefix/, s3://bucket/manifest.txt, http(s)/s3 URLs, or a local folder "
        "(its photos uploaded first through /v1/images)",
    )
    submit.add_argument("--follow", action="store_true", help="show its progress until it ends")
    _add_analysis_options(submit)
    submit.add_argument("--webhook-url", help="POSTed the job, signed, when it ends")
    submit.add_argument("--idempotency-key", help="the same key again answers the same job")
    submit.add_argument(
        "--export",
        metavar="S3_PREFIX",
        help="s3://bucket/prefix/ the results are written to once done, as JSON Lines shards "
        "(a place the gateway's PICMETRIC_JOBS_EXPORT_TO allows)",
    )
    for name, what in (("status", "a job's state and progress"), ("cancel", "cancel a job")):
        action = actions.add_parser(name, help=what)
        action.add_argument("id", help="the job's id, as `jobs submit` printed it")
    results = actions.add_parser("results", help="the job's answers as JSON Lines")
    results.add_argument("id", help="the job's id, as `jobs submit` printed it")
    results.add_argument("-o", "--output", type=Path, help="a file (default: standard output)")
    listed = actions.add_parser("list", help="this key's newest jobs")
    listed.add_argument("--limit", type=int, default=20, metavar="N", help="at most N jobs")
    for action in actions.choices.values():
        _add_connection(action, settings)


def _options(args: argparse.Namespace) -> dict[str, str]:
    given = (
        ("models", args.models),
        ("threshold", args.threshold),
        ("max_results", args.max_results),
        ("min_face_size", args.min_face_size),
    )
    return {name: str(value) for name, value in given if value is not None}


def _say(*lines: str) -> None:
    """A message for the person at the terminal: stderr, so stdout stays the results."""
    for line in lines:
        print(line, file=sys.stderr)


def _usage(message: str) -> ClientError:
    return ClientError(message, ExitCode.USAGE)


def check_draw(target: Path | None, blur_faces: bool, photos: list[str]) -> None:
    """Before anything is sent: --draw's folder exists and its extension is a format OpenCV
    writes; --blur-faces comes with --draw; --draw takes one photo."""
    if target is None:
        if blur_faces:
            raise _usage("--blur-faces blurs the drawn photo: add --draw FILE.")
        return
    import cv2

    if len(photos) != 1:
        raise _usage(f"--draw saves one photo, and {len(photos)} were given.")
    folder = target.parent
    if not folder.is_dir():
        raise _usage(f"--draw {target}: there is no folder {folder}; create it first.")
    if not os.access(folder, os.W_OK) or target.is_dir():
        raise _usage(f"--draw {target}: cannot write there; name a file in a folder you can write.")
    if not target.suffix or not cv2.haveImageWriter(str(target)):
        raise _usage(
            f"--draw {target}: name a file with an image extension (.jpg, .png, .webp, .bmp, .tif)."
        )


def save_drawing(target: Path, jpeg: bytes) -> None:
    """The annotated JPEG, written as is for .jpg/.jpeg, else converted to the extension's
    format."""
    data = jpeg
    if target.suffix.lower() not in (".jpg", ".jpeg"):
        import cv2
        import numpy as np

        pixels = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        ok, encoded = cv2.imencode(target.suffix, pixels)
        if pixels is None or not ok:
            raise ClientError(f"Could not write {target} as {target.suffix}.")
        data = encoded.tobytes()
    try:
        target.write_bytes(data)
    except OSError as exc:
        raise ClientError(f"Cannot write {target}: {exc.strerror}.", ExitCode.BAD_INPUT) from exc


def _progress(done: int, total: int) -> None:
    """A progress bar on a terminal's stderr (nothing when stderr is a file or a pipe)."""
    if not sys.stderr.isatty():
        return
    width = 30
    filled = width * done // total
    end = "\n" if done == total else ""
    print(
        f"\ranalysing [{'#' * filled}{'-' * (width - filled)}] {done}/{total}",
        end=end,
        file=sys.stderr,
        flush=True,
    )


def _print_json(value: Any, lines: bool = False) -> None:
    print(json.dumps(value) if lines else json.dumps(value, indent=2), flush=True)


def analyze(args: argparse.Namespace) -> ExitCode:
    photos = client.photos_in(args.photos)
    check_draw(args.draw, args.blur_faces, photos)
    if args.batch_size < 1:
        raise _usage("--batch-size must be at least 1.")
    # One photo named as such is answered alone; a folder or glob's photos as a batch, one line
    # each, however many (a script reads the same lines). --draw takes one photo (check_draw),
    # however it was named.
    named = args.photos[0]
    one = len(photos) == 1 and (
        args.draw is not None or client.is_url(named) or Path(named).expanduser().is_file()
    )
    with client.Gateway(args.gateway, args.api_key, args.no_cache) as gateway:
        if not one:
            return _analyze_many(gateway, photos, args)
        if args.draw is None:
            analysis = gateway.analyze(photos[0], _options(args))
        else:
            drawn = gateway.annotate(photos[0], _options(args), args.blur_faces)
            save_drawing(args.draw, drawn.jpeg)
            analysis = drawn.analysis
    if args.json:
        _print_json(analysis)
    else:
        print("\n".join(client.summary(analysis)))
    if args.draw is not None:
        _say(f"Saved the annotated photo to {args.draw}")
    return ExitCode.OK


def _analyze_many(gateway: client.Gateway, photos: list[str], args: argparse.Namespace) -> ExitCode:
    """Every photo through /v1/batch, a chunk at a time; each photo's result printed as it comes
    (JSON lines with --json). A photo that fails is printed and the others go on; the exit code
    is the worst failure's."""
    worst = ExitCode.OK
    done = 0
    _progress(0, len(photos))
    for chunk in client.chunks(photos, args.batch_size):
        try:
            answer = gateway.batch(chunk, _options(args))
        except (ClientError, KeyboardInterrupt):
            if sys.stderr.isatty():  # the failure's line after the bar's, not on it
                print(file=sys.stderr)
            raise
        for photo, item in zip(chunk, answer["results"], strict=True):
            error = item.get("error")
            if error is not None:
                code = client.exit_code_for(error["errortype"])
                worst = max(worst, code, key=_severity)
            if args.json:
                _print_json(
                    {"photo": photo, **{k: item.get(k) for k in ("analysis", "error")}}, lines=True
                )
            elif error is not None:
                print(f"{photo}: failed, {error['errortype']}: {error['message']}")
            else:
                print(f"{photo}:\n  " + "\n  ".join(client.summary(item["analysis"])))
        done += len(chunk)
        _progress(done, len(photos))
    return worst


def _severity(code: ExitCode) -> int:
    """Which failure a run of many photos exits with: the gateway down beats a refused key beats
    a bad photo."""
    order = [
        ExitCode.OK,
        ExitCode.BAD_INPUT,
        ExitCode.FAILED,
        ExitCode.REFUSED,
        ExitCode.UNAVAILABLE,
    ]
    return order.index(code)


def show(args: argparse.Namespace) -> ExitCode:
    with client.Gateway(args.gateway, args.api_key) as gateway:
        analysis = gateway.analysis(args.id)
    if args.json:
        _print_json(analysis)
    else:
        print("\n".join(client.summary(analysis)))
    return ExitCode.OK


def models(args: argparse.Namespace) -> ExitCode:
    with client.Gateway(args.gateway, args.api_key) as gateway:
        found = gateway.models()
    if args.json:
        _print_json(found)
    else:
        print("\n".join(client.models_table(found)))
    return ExitCode.OK


def samples(args: argparse.Namespace) -> ExitCode:
    try:
        from skimage import data
    except ImportError as exc:
        raise ClientError(
            "The sample photos come with scikit-image: pip install scikit-image "
            "(./bootstrap.sh's .venv has it)."
        ) from exc
    import cv2

    folder: Path = args.folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClientError(f"Cannot make the folder {folder}: {exc.strerror}.") from exc
    for name, photo in SAMPLES.items():
        rgb = getattr(data, photo)()
        path = folder / name
        if not cv2.imwrite(
            str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
        ):
            raise ClientError(f"Could not write {path}.")
        print(path)
    return ExitCode.OK


def jobs(args: argparse.Namespace) -> ExitCode:
    """`picmetric jobs ACTION`: the job (or jobs) as a progress line each, or their JSON."""
    with jobs_client.JobsClient(args.gateway, args.api_key) as gateway:
        if args.action == "results":
            if args.output is None:
                gateway.write_results(args.id, sys.stdout)
                return ExitCode.OK
            try:
                with args.output.open("w") as out:
                    count = gateway.write_results(args.id, out)
            except OSError as exc:
                raise ClientError(f"Cannot write {args.output}: {exc.strerror}.") from exc
            _say(f"Wrote {count} results to {args.output}")
            return ExitCode.OK
        if args.action == "list":
            for job in gateway.jobs(args.limit):
                print(json.dumps(job) if args.json else jobs_client.progress_line(job))
            return ExitCode.OK
        if args.action == "status":
            job = gateway.job(args.id)
        elif args.action == "cancel":
            job = gateway.cancel(args.id)
        else:
            job = _submit_job(gateway, args)
        print(json.dumps(job, indent=2) if args.json else jobs_client.progress_line(job))
    return ExitCode.OK


def _submit_job(gateway: jobs_client.JobsClient, args: argparse.Namespace) -> dict[str, Any]:
    line = jobs_client.ProgressLine()
    if len(args.source) == 1 and Path(args.source[0]).is_dir():
        folder = Path(args.source[0])
        urls = gateway.upload_folder(folder, lambda n, total: line.show(f"uploaded {n}/{total}"))
        line.end()
        source = jobs_client.job_source(urls)
    else:
        source = jobs_client.job_source(args.source)
    options = client.json_options(_options(args))
    job = gateway.submit(source, options, args.webhook_url, args.idempotency_key, args.export)
    if job.get("webhook_secret") and not args.json:
        _say(f"webhook signing secret (shown once): {job['webhook_secret']}")
    if args.follow:
        job = gateway.follow(job["id"], lambda now: line.show(jobs_client.progress_line(now)))
        line.end()
    return job


def run(args: argparse.Namespace) -> int:
    """The command's exit code; a failure said on stderr in one line (as JSON on stdout with
    --json)."""
    commands = {
        "analyze": analyze,
        "show": show,
        "models": models,
        "samples": samples,
        "jobs": jobs,
    }
    command = commands[args.command]
    if getattr(args, "api_key", False) is None:
        args.api_key = ClientSettings().api_key
    try:
        return int(command(args))
    except ClientError as exc:
        fail(args.command, exc, getattr(args, "json", False))
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _say(f"picmetric {args.command}: interrupted")
        return INTERRUPTED


def fail(command: str, exc: ClientError, as_json: bool) -> None:
    """A failure said once: one line on stderr, or with --json a JSON line on stdout."""
    if as_json:
        _print_json({"error": exc.as_json()}, lines=True)
    else:
        _say(f"picmetric {command}: {exc}")
