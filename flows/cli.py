"""`ferry`: the command line. Thin: it parses arguments, checks the endpoints, runs a flow with a
progress bar, and prints the summary.

Exit codes: 0 every entry ok or skipped; 1 some entry rejected or failed; 2 the task could not run
(bad arguments, missing directory or bucket, bad credentials) — one line saying what is wrong;
3 the task was cancelled (Ctrl-C, `ferry stream stop`, Cancel in the UI) — its summary is printed;
4 an error ferry did not foresee — one line, and the traceback with -v.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from flows.exit_codes import EXIT_CANNOT_RUN, EXIT_OK, EXIT_UNEXPECTED

MB = 1_000_000


def _quiet_prefect(verbose: bool) -> None:
    """Prefect's console log only with -v: the CLI prints its own progress and summary."""
    from flows.local_api import prefect_defaults

    prefect_defaults(None if verbose else "CRITICAL")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text!r}")
    return value


def _bounded(option):
    """An argparse type checking a value against the option's own type and bounds in
    `flows.options` (so `--concurrency 5000` fails here, with one line, as the flow would)."""

    def convert(text: str):
        from pydantic import TypeAdapter, ValidationError

        try:
            return TypeAdapter(option).validate_python(text, strict=False)
        except ValidationError as exc:
            message = exc.errors()[0]["msg"].removeprefix("Value error, ")
            message = f"{message[0].lower()}{message[1:]}"
            if repr(text) not in message:
                message += f": {text!r}"
            raise argparse.ArgumentTypeError(message) from None

    return convert


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    lowered = value.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    return key, value


def _add_credentials_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--credentials-block",
        metavar="NAME",
        help="a ferry-s3-credentials block with the bucket's access key (see `ferry credentials "
        "create`); key/secret storage options are stored with the run in clear",
    )


def _add_storage_arguments(p: argparse.ArgumentParser) -> None:
    for side in ("source", "destination"):
        p.add_argument(
            f"--{side}-option",
            action="append",
            type=_option,
            default=[],
            metavar="KEY=VALUE",
            help=f"a storage option for the {side} (s3fs: endpoint_url, use_ssl, ...)",
        )
    _add_credentials_argument(p)
    p.add_argument(
        "--report-dir",
        help="where the manifest and summary go (default: $FERRY_REPORT_DIR or ./ferry-reports)",
    )
    p.add_argument("--include", action="append", metavar="GLOB", help="copy only matching paths")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="leave matching paths out")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect's log")


def _add_transfer_arguments(p: argparse.ArgumentParser) -> None:
    from flows import options

    _add_storage_arguments(p)
    p.add_argument(
        "--overwrite",
        choices=["changed", "always", "never"],
        default="changed",
        help="replace an existing entry: when size or mtime differ (default), always, or never",
    )
    p.add_argument(
        "--verify",
        choices=["size-mtime", "checksum", "none"],
        default="size-mtime",
        help="check the destination after copying (default: size-mtime)",
    )
    p.add_argument(
        "--bandwidth-mbps",
        type=_positive_float,
        metavar="MB/S",
        help="cap the task's transfer rate, in MB/s",
    )
    p.add_argument(
        "--concurrency",
        type=_bounded(options.Concurrency),
        default=32,
        help="objects in flight at once (default: 32)",
    )
    p.add_argument(
        "--partition-files",
        type=_bounded(options.PartitionFiles),
        default=2000,
        help="most entries per partition (default: 2000)",
    )
    p.add_argument(
        "--partition-bytes",
        type=_bounded(options.PartitionBytes),
        default=2 * 2**30,
        help="most bytes per partition, e.g. 512M, 2G (default: 2GiB)",
    )
    p.add_argument(
        "--retries",
        type=_bounded(options.Retries),
        default=5,
        help="attempts per object on transient errors (default: 5)",
    )
    p.add_argument("--dry-run", action="store_true", help="plan and report, copy nothing")


def _add_job_commands(commands) -> None:
    """export, import, verify and convert: at the top level, and after `schedule create`."""
    p = commands.add_parser("export", help="copy a directory to s3://bucket/prefix")
    p.add_argument("source", metavar="SRC", help="directory to export")
    p.add_argument("destination", metavar="DST", help="s3://bucket/prefix")
    _add_transfer_arguments(p)
    p = commands.add_parser("import", help="copy s3://bucket/prefix to a directory")
    p.add_argument("source", metavar="SRC", help="s3://bucket/prefix")
    p.add_argument("destination", metavar="DST", help="directory to import into")
    _add_transfer_arguments(p)
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="import even when nothing is stored under SRC (by default: exit 2)",
    )
    p = commands.add_parser("verify", help="compare two trees (like rclone check)")
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DST")
    _add_storage_arguments(p)
    p.add_argument(
        "--verify",
        choices=["size-mtime", "checksum", "none"],
        default="size-mtime",
        help="what to compare besides presence and size (default: size-mtime)",
    )
    p = commands.add_parser(
        "convert",
        help="turn a flat bucket into a hierarchical namespace (metadata only, irreversible)",
    )
    p.add_argument("bucket", metavar="BUCKET", help="s3://bucket")
    p.add_argument(
        "--metadata",
        required=True,
        metavar="URL",
        help="SQLAlchemy URL of the namespace store, e.g. sqlite:////var/lib/ferry/b.db",
    )
    p.add_argument(
        "--check-only",
        action="store_true",
        help="check eligibility and report every rename that would happen; change nothing",
    )
    p.add_argument(
        "--skip-tag-check",
        action="store_true",
        help="do not look for object tags (saves one request per object)",
    )
    p.add_argument(
        "--option",
        action="append",
        type=_option,
        default=[],
        metavar="KEY=VALUE",
        help="a storage option for the bucket (s3fs: endpoint_url, use_ssl, ...)",
    )
    _add_credentials_argument(p)
    p.add_argument("--report-dir", help="where the manifest and summary go")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect's log")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferry",
        description="Move data between a file system and an S3-compatible bucket, with a "
        "Parquet manifest of every entry.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_job_commands(commands)
    _add_stream_commands(commands)
    _add_schedule_commands(commands)
    p = commands.add_parser("credentials", help="store an S3 access key where Prefect masks it")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("create", help="create (or replace) a ferry-s3-credentials block")
    p.add_argument("name")
    p.add_argument("--key", required=True, help="access key id")
    p.add_argument("--secret", required=True, help="secret key; '-' reads it from standard input")
    p.add_argument("--token", help="session token, for temporary keys")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect's log")
    p = commands.add_parser("serve", help="serve ferry's deployments (and each data stream's)")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect's log")
    p = commands.add_parser(
        "demo",
        help="export, import and verify a sample tree on a local S3 server (needs nothing running)",
    )
    p.add_argument("--keep", metavar="DIR", help="build the demo in DIR instead of a temporary one")
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect's log")
    return parser


def _add_schedule_commands(commands) -> None:
    schedule = commands.add_parser(
        "schedule", help="named schedules of export, import, verify or convert, run by ferry serve"
    )
    verbs = schedule.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser(
        "create",
        help="schedule a job with its options, e.g.: ferry schedule create nightly "
        "--cron '0 2 * * *' export /data s3://bucket/data --bandwidth-mbps 200",
    )
    p.add_argument("name", help="the schedule's name: lowercase letters, digits and dashes")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPRESSION", help="a cron expression, e.g. '0 2 * * *'")
    when.add_argument(
        "--interval", type=_positive_float, metavar="SECONDS", help="run every SECONDS seconds"
    )
    p.add_argument("--timezone", metavar="TZ", help="the cron's time zone (default: UTC)")
    jobs = p.add_subparsers(dest="job", required=True, metavar="JOB")
    _add_job_commands(jobs)
    p = verbs.add_parser("list", help="every schedule of ferry's jobs (also those added in the UI)")
    p.add_argument("--json", action="store_true", help="print the schedules as JSON")
    for verb, text in (
        ("pause", "stop a schedule making runs (it stays stored)"),
        ("resume", "let a paused schedule make runs again"),
        ("delete", "remove a schedule"),
    ):
        verbs.add_parser(verb, help=text).add_argument("name")


def _schedule_command(args: argparse.Namespace) -> int:
    from deployments import schedules

    if args.verb == "create":
        parameters = job_parameters(args.job, args)
        schedules.schedule_of(args.cron, args.interval, args.timezone)
        _check_job(args.job, parameters)
        _warn_plain_secrets(**{k: v for k, v in parameters.items() if k.endswith("options") and v})
        Console().waiting_for_prefect()
        found = schedules.create_schedule(
            args.name,
            args.job,
            parameters,
            cron=args.cron,
            interval=args.interval,
            timezone=args.timezone,
        )
        print(
            f"created schedule {found['name']}: {found['job']} {found['schedule']}; "
            "`ferry serve` runs it"
        )
        return EXIT_OK
    Console().waiting_for_prefect()
    if args.verb == "list":
        found = schedules.list_schedules()
        if args.json:
            print(json.dumps(found, indent=2))
            return EXIT_OK
        if not found:
            print("no schedules (create one with `ferry schedule create`)")
        for s in found:
            state = "active" if s["active"] and not s["deployment_paused"] else "paused"
            shown = " ".join(
                f"{k}={v}" for k, v in s["parameters"].items() if k in SHOWN_PARAMETERS
            )
            print(f"{s['name']}\t{s['job']}\t{s['schedule']}\t{state}\t{shown}")
        return EXIT_OK
    if args.verb == "delete":
        schedules.delete_schedule(args.name)
        print(f"deleted schedule {args.name}")
        return EXIT_OK
    schedules.set_active(args.name, args.verb == "resume")
    print(f"{'resumed' if args.verb == 'resume' else 'paused'} schedule {args.name}")
    return EXIT_OK


SHOWN_PARAMETERS = ("source", "destination", "bucket_url")


def _check_job(job: str, parameters: dict[str, Any]) -> None:
    """What the job's own command checks before it runs (paths, buckets, the metadata store),
    so a schedule is not stored to fail at 2 a.m.; an import's prefix may still be empty."""
    if job == "convert":
        _check_metadata_url(parameters["metadata"])
        return
    kwargs = {k: v for k, v in parameters.items() if k not in ("source", "destination")}
    if kwargs.get("credentials_block"):
        Console().waiting_for_prefect()
    preflight(job, parameters["source"], parameters["destination"], {**kwargs, "allow_empty": True})


def _add_stream_commands(commands) -> None:
    stream = commands.add_parser("stream", help="data streams: directory ↔ bucket prefix links")
    verbs = stream.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("create", help="create a data stream (checked before it is stored)")
    p.add_argument("name")
    p.add_argument("directory")
    p.add_argument("bucket_url", metavar="s3://bucket/prefix")
    p.add_argument("--endpoint-url", help="S3 endpoint (default: the environment's)")
    p.add_argument("--no-ssl", action="store_true", help="reach the endpoint over plain HTTP")
    p.add_argument("--key", help="access key id (kept in a Prefect Secret block)")
    p.add_argument("--secret", help="secret key; '-' reads it from standard input")
    p.add_argument("--bandwidth-mbps", type=_positive_float)
    p.add_argument("--description", default="")
    p.add_argument(
        "--auto-update",
        action="store_true",
        help="import the --prefix prefixes every --refresh-minutes",
    )
    p.add_argument("--refresh-minutes", type=_positive_float)
    p.add_argument("--prefix", action="append", default=[], help="auto-update prefix, like /a/b/")
    verbs.add_parser("list", help="the data streams and their states")
    for verb, text in (
        ("show", "settings, state and recent tasks"),
        ("stop", "cancel running tasks, pause schedules, refuse new tasks"),
        ("enable", "undo stop"),
        ("delete", "cancel, remove deployments and limits, forget the stream"),
    ):
        verbs.add_parser(verb, help=text).add_argument("name")
    p = verbs.add_parser("modify", help="refresh interval, added prefixes, bandwidth, description")
    p.add_argument("name")
    p.add_argument("--refresh-minutes", type=_positive_float)
    p.add_argument("--add-prefix", action="append", default=[])
    p.add_argument("--bandwidth-mbps", type=_positive_float)
    p.add_argument("--description")
    p = verbs.add_parser(
        "run",
        help="start a task on the stream's settings: a batch import or "
        "export, or a stream-import / stream-export that runs until stopped",
    )
    p.add_argument("name")
    p.add_argument("job", choices=["import", "export", "stream-import", "stream-export"])
    p.add_argument(
        "--max-runtime",
        type=_positive_float,
        metavar="SECONDS",
        help="stream tasks: stop after this long",
    )
    p.add_argument(
        "--idle-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="stream tasks: stop after this long with nothing to do",
    )
    p.add_argument("--report-dir")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p = verbs.add_parser("submit", help="hand files to a running stream export (TASK is its id)")
    p.add_argument("task")
    p.add_argument("paths", nargs="+", metavar="PATH")
    for sub_parser in verbs.choices.values():
        sub_parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect's log")


def _stream_command(args: argparse.Namespace) -> int:
    from tasks.errors import UsageError

    console = Console()
    console.waiting_for_prefect()
    from deployments import streams

    if args.verb == "create":
        secret = sys.stdin.readline().strip() if args.secret == "-" else args.secret
        streams.create_stream(
            args.name,
            args.directory,
            args.bucket_url,
            endpoint_url=args.endpoint_url,
            use_ssl=not args.no_ssl,
            key=args.key,
            secret=secret,
            bandwidth_mbps=args.bandwidth_mbps,
            description=args.description,
            auto_update=args.auto_update,
            refresh_minutes=args.refresh_minutes,
            prefixes=args.prefix,
        )
        console.out.print(f"created data stream {args.name}")
    elif args.verb == "list":
        for name, stream in streams.all_streams().items():
            console.out.print(
                f"{name}\t{stream.state}\t{stream.directory} ↔ {stream.bucket_url}",
                highlight=False,
                soft_wrap=True,
            )
    elif args.verb == "show":
        shown = {
            "name": args.name,
            **streams.load(args.name).settings(),
            "deployments": streams.deployment_states(args.name),
            "recent_tasks": streams.recent_tasks(args.name),
        }
        print(json.dumps(shown, indent=2, default=str))
    elif args.verb == "modify":
        streams.modify_stream(
            args.name,
            refresh_minutes=args.refresh_minutes,
            add_prefixes=args.add_prefix,
            bandwidth_mbps=args.bandwidth_mbps,
            description=args.description,
        )
        console.out.print(f"modified data stream {args.name}")
    elif args.verb == "submit":
        from flows.stream_tasks import submit_files

        missing = [p for p in args.paths if not os.path.exists(p)]
        if missing:
            raise UsageError("no such file", where=", ".join(missing))
        try:
            submit_files(args.task, args.paths)
        except ValueError:
            raise UsageError("TASK is the stream task's id (a UUID)", where=args.task) from None
        console.out.print(f"submitted {len(args.paths)} files to {args.task}")
    elif args.verb in ("stop", "enable", "delete"):
        getattr(streams, f"{args.verb}_stream")(args.name)
        console.out.print(f"{args.verb}: data stream {args.name}")
    elif args.verb == "run":
        from flows.streams import stream_task

        result = console.run(
            f"{args.name} {args.job}",
            lambda: stream_task(
                args.name,
                args.job,
                report_dir=args.report_dir,
                max_runtime=args.max_runtime,
                idle_timeout=args.idle_timeout,
            ),
        )
        console.summary(result, as_json=args.json)
        return result.exit_code
    return EXIT_OK


def job_parameters(job: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every parameter of the job's flow, from parsed CLI arguments."""
    if job == "convert":
        return {
            "bucket_url": args.bucket,
            "metadata": args.metadata,
            "credentials_block": args.credentials_block,
            "storage_options": dict(args.option) or None,
            "report_dir": args.report_dir,
            "check_only": args.check_only,
            "check_tags": not args.skip_tag_check,
        }
    return {"source": args.source, "destination": args.destination, **flow_arguments(args, job)}


def flow_arguments(args: argparse.Namespace, command: str | None = None) -> dict[str, Any]:
    """The flow's keyword arguments (all but source and destination) from parsed CLI
    arguments of `command` (export, import or verify; by default args.command)."""
    command = command or args.command
    kwargs: dict[str, Any] = {
        "source_options": dict(args.source_option) or None,
        "destination_options": dict(args.destination_option) or None,
        "include": args.include,
        "exclude": args.exclude,
        "report_dir": args.report_dir,
        "verify": args.verify,
        "credentials_block": args.credentials_block,
    }
    if command in ("export", "import"):
        kwargs.update(
            overwrite=args.overwrite,
            bandwidth_mbps=args.bandwidth_mbps,
            concurrency=args.concurrency,
            partition_files=args.partition_files,
            partition_bytes=args.partition_bytes,
            retries=args.retries,
            dry_run=args.dry_run,
        )
    if command == "import":
        kwargs["allow_empty"] = args.allow_empty
    return kwargs


def preflight(command: str, source: str, destination: str, kwargs: dict[str, Any]) -> None:
    """Check both endpoints before starting Prefect, so a wrong path or bucket fails in a second
    with one line, not after the API has started. Raises FerryError."""
    from tasks.endpoints import BucketPrefix, Directory, parse_endpoint, transfer_endpoints
    from tasks.listing import Filter
    from tasks.manifest import check_report_dir
    from tasks.preflight import check_bucket, check_directory

    Filter(kwargs["include"], kwargs["exclude"])
    check_report_dir(kwargs["report_dir"])
    if kwargs["credentials_block"]:
        from flows.credentials import for_url

        kwargs = {
            **kwargs,
            "source_options": for_url(
                source, kwargs["source_options"], kwargs["credentials_block"]
            ),
            "destination_options": for_url(
                destination, kwargs["destination_options"], kwargs["credentials_block"]
            ),
        }

    if command in ("export", "import"):
        directory, bucket = transfer_endpoints(
            command, source, destination, kwargs["source_options"], kwargs["destination_options"]
        )
        check_directory(directory, must_exist=command == "export")
        check_bucket(bucket, must_hold_objects=command == "import" and not kwargs["allow_empty"])
        return
    for url, options in (
        (source, kwargs["source_options"]),
        (destination, kwargs["destination_options"]),
    ):
        endpoint = parse_endpoint(url, options)
        if isinstance(endpoint, Directory):
            check_directory(endpoint, must_exist=True)
        elif isinstance(endpoint, BucketPrefix):
            check_bucket(endpoint)


class Console:
    """Progress and summaries on the terminal (stderr for progress, stdout for results)."""

    def __init__(self) -> None:
        from rich.console import Console as RichConsole

        self.out = RichConsole()
        self.err = RichConsole(stderr=True)

    def waiting_for_prefect(self):
        """Start Prefect's temporary local API up front, saying so, when no API is configured."""
        from flows.local_api import needs_local_api, start_local_api

        if not needs_local_api():
            return
        with self.err.status(
            "Starting Prefect's temporary local API (20-30 s on small machines; "
            "set PREFECT_API_URL to use a running server)..."
        ):
            start_local_api()

    def run(self, title: str, call: Callable[[], Any]) -> Any:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        from tasks import progress as events

        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[files]}"),
            TimeElapsedColumn(),
            console=self.err,
            transient=True,
            disable=not self.err.is_terminal,
        )
        task = bar.add_task(title, total=None, files="")
        state = {"files": 0, "total": 0}

        def on_event(event: str, files: int, nbytes: int, _total: int) -> None:
            if event == "planned":
                state["total"] = files
                bar.update(task, total=nbytes or None, files=f"0/{files} entries")
            else:
                state["files"] += files
                bar.update(task, advance=nbytes, files=f"{state['files']}/{state['total']} entries")

        stop = events.listen(on_event)
        try:
            with bar, _ctrl_c_cancels(self.err):
                return call()
        finally:
            stop()

    def summary(self, result, *, as_json: bool = False) -> None:
        if as_json:
            print(json.dumps(result.model_dump(), indent=2))
            return
        c = result.counts
        seconds = result.seconds or 0.0
        rate = result.bytes / MB / seconds if seconds else 0.0
        per_second = sum(c.values()) / seconds if seconds else 0.0
        title = f"ferry {result.job}{' (dry run)' if result.dry_run else ''}"
        self.out.print(
            f"[bold]{title}[/bold]  {result.source} → {result.destination}",
            soft_wrap=True,
            highlight=False,
        )
        standard = ("ok", "skipped", "rejected", "failed")
        counts = " · ".join(
            [
                f"[red]{c.get(k, 0)} {k}[/red]"
                if k in ("rejected", "failed") and c.get(k, 0)
                else f"{c.get(k, 0)} {k}"
                for k in standard
            ]
            # conversion's own outcomes (renamed, directory, ...), shown, not hidden
            + [f"{n} {k}" for k, n in sorted(c.items()) if k not in standard and n]
        )
        self.out.print(
            f"  {counts}   {result.bytes / MB:,.1f} MB in {seconds:.1f} s "
            f"({rate:,.1f} MB/s, {per_second:,.0f} entries/s)",
            highlight=False,
            soft_wrap=True,
        )
        if not result.ok:
            self._problems(result.manifest)
        if result.job == "convert":
            self._renames(result.manifest, would=result.dry_run)
        self.out.print(f"  manifest: {result.manifest}", soft_wrap=True, highlight=False)

    def _renames(self, manifest: str, *, would: bool, limit: int = 50) -> None:
        import pandas as pd

        frame = pd.read_parquet(manifest, columns=["path", "new_path", "rule"])
        moved = frame[frame["new_path"].notna() & (frame["new_path"] != frame["path"])]
        verb = "would rename" if would else "renamed"
        for row in moved.head(limit).itertuples():
            self.out.print(
                f"  {verb} {row.path} → {row.new_path} ({row.rule})", markup=False, highlight=False
            )
        if len(moved) > limit:
            self.out.print(f"  ... and {len(moved) - limit} more (see the manifest)")

    def _problems(self, manifest: str, limit: int = 10) -> None:
        import pandas as pd

        frame = pd.read_parquet(manifest, columns=["path", "status", "reason"])
        bad = frame[frame["status"].isin(["rejected", "failed"])]
        for row in bad.head(limit).itertuples():
            self.out.print(
                f"  [red]{row.status}[/red] {row.path}: {row.reason}", markup=True, highlight=False
            )
        if len(bad) > limit:
            self.out.print(f"  ... and {len(bad) - limit} more (see the manifest)")


@contextlib.contextmanager
def _ctrl_c_cancels(err):
    """While a task runs, the first Ctrl-C cancels it the way Cancel in the UI does (in-flight
    transfers abandoned and cleaned up, summary printed); a second one, or one before the copy
    has started, interrupts at once."""
    import signal
    import threading

    from tasks import cancel

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if not cancel.request_all():
            raise KeyboardInterrupt
        err.print("ferry: cancelling (Ctrl-C again to stop at once)...", highlight=False)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_prefect(
        getattr(args, "verbose", False) or args.command == "serve"
    )  # a service's log is its output
    from flows.result import EntriesFailed, TaskCancelled
    from tasks.errors import FerryError

    try:
        if args.command == "demo":
            from flows.demo import run_demo

            return run_demo(Console(), keep=args.keep)
        if args.command == "convert":
            return _convert_command(args)
        if args.command == "stream":
            return _stream_command(args)
        if args.command == "credentials":
            return _credentials_command(args)
        if args.command == "schedule":
            return _schedule_command(args)
        if args.command == "serve":
            _need_a_server()
            from deployments.serve import serve

            serve()
            return EXIT_OK
        return _transfer_command(args)
    except (TaskCancelled, EntriesFailed) as exc:  # the run ended Cancelled / Failed
        Console().summary(exc.result, as_json=getattr(args, "json", False))
        return exc.result.exit_code
    except FerryError as exc:
        print(f"ferry: error: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        print("ferry: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place an unforeseen error meets the user
        verbose = getattr(args, "verbose", False)
        if verbose:
            traceback.print_exc()
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        print(
            f"ferry: unexpected error: {type(exc).__name__}: {detail}"
            + ("" if verbose else " (run with -v for the traceback)"),
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED


def _warn_plain_secrets(**sides) -> None:
    if not any(sides.values()):
        return
    from flows.credentials import plain_secrets

    found = plain_secrets(**sides)
    if found:
        print(
            f"ferry: warning: {', '.join(found)} given as a storage option is stored with the "
            "Prefect flow run in clear; use --credentials-block instead",
            file=sys.stderr,
        )


def _need_a_server() -> None:
    """Serving needs a real Prefect server: the temporary local API has no scheduler, and it
    would vanish with this process."""
    from flows.local_api import needs_local_api
    from tasks.errors import UsageError

    if needs_local_api():
        raise UsageError(
            "ferry serve needs a running Prefect server: start one with `prefect server start` "
            "and set PREFECT_API_URL=http://127.0.0.1:4200/api"
        )


def _credentials_command(args: argparse.Namespace) -> int:
    secret = sys.stdin.readline().strip() if args.secret == "-" else args.secret
    if not secret:
        from tasks.errors import UsageError

        raise UsageError("empty secret")
    Console().waiting_for_prefect()
    from flows.credentials import save_credentials

    save_credentials(args.name, args.key, secret, args.token)
    print(f"saved ferry-s3-credentials block {args.name}")
    return EXIT_OK


def _convert_command(args: argparse.Namespace) -> int:
    from tasks.endpoints import BucketPrefix, parse_endpoint
    from tasks.errors import UsageError
    from tasks.preflight import check_bucket

    options = dict(args.option) or None
    console = Console()
    checked = options
    if args.credentials_block:  # the block lives in the Prefect API
        from flows.credentials import for_url

        console.waiting_for_prefect()
        checked = for_url(args.bucket, options, args.credentials_block)
    bucket = parse_endpoint(args.bucket, checked)
    if not isinstance(bucket, BucketPrefix) or bucket.prefix:
        raise UsageError("convert takes a whole bucket: s3://bucket", where=args.bucket)
    _check_metadata_url(args.metadata)
    check_bucket(bucket)
    _warn_plain_secrets(storage_options=options)
    from flows import convert_to_hns

    console.waiting_for_prefect()
    result = console.run(
        "convert",
        lambda: convert_to_hns(
            args.bucket,
            metadata=args.metadata,
            credentials_block=args.credentials_block,
            storage_options=options,
            report_dir=args.report_dir,
            check_only=args.check_only,
            check_tags=not args.skip_tag_check,
        ),
    )
    console.summary(result, as_json=args.json)
    return result.exit_code


def _check_metadata_url(url: str) -> None:
    import sqlalchemy

    from tasks.errors import UsageError

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:  # noqa: BLE001 - any parse failure means the same to the user
        raise UsageError("not an SQLAlchemy URL (try sqlite:////path/ns.db)", where=url) from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        folder = os.path.dirname(os.path.abspath(parsed.database or ""))
        if parsed.database and not os.path.isdir(folder):
            raise UsageError("the metadata store's folder does not exist", where=folder)
        return
    try:
        engine = sqlalchemy.create_engine(parsed)
        with engine.connect():
            pass
        engine.dispose()
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"the driver {exc.name!r} is not installed (pip install 'ferry[postgres]')", where=shown
        ) from None
    except Exception as exc:  # noqa: BLE001 - a store that cannot be opened, for any reason
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise UsageError(f"cannot open the metadata store ({reason})", where=shown) from None


def _transfer_command(args: argparse.Namespace) -> int:
    kwargs = flow_arguments(args)
    console = Console()
    if kwargs["credentials_block"]:  # the block lives in the Prefect API
        console.waiting_for_prefect()
    preflight(args.command, args.source, args.destination, kwargs)
    _warn_plain_secrets(
        source_options=kwargs["source_options"], destination_options=kwargs["destination_options"]
    )
    from flows import export_data, import_data, verify_data

    flow = {"export": export_data, "import": import_data, "verify": verify_data}[args.command]
    console.waiting_for_prefect()
    result = console.run(args.command, lambda: flow(args.source, args.destination, **kwargs))
    console.summary(result, as_json=args.json)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
