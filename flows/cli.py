"""`ferry`: the command line, built with cyclopts from the one options model.

The job commands (export, import, verify, convert, and the same after `schedule create`) take
their endpoints and flags from `tasks.options`: each option's flag, help, choices and bounds come
from its field, so a new option is a new flag with no change here. Parsing errors, bad values and
every ferry error are one line on stderr. What the terminal shows is `flows.console`'s.

Exit codes: 0 every entry ok or skipped; 1 some entry rejected or failed; 2 the task could not run
(bad arguments, missing directory or bucket, bad credentials) — one line saying what is wrong;
3 the task was cancelled (Ctrl-C, `ferry stream stop`, Cancel in the UI) — its summary is printed;
4 an error ferry did not foresee — one line, and the traceback with -v.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import traceback
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from cyclopts import App, CycloptsError, Parameter
from pydantic import Field, TypeAdapter, ValidationError

from flows.console import Console
from flows.exit_codes import EXIT_CANNOT_RUN, EXIT_OK, EXIT_UNEXPECTED
from tasks.errors import UsageError
from tasks.options import ENDPOINTS, KEYWORD_ENDPOINTS, Cli, Options, cli_of, parse_size

JOBS = ("export", "import", "verify", "convert")
JOB_HELP = {
    "export": "copy a directory to s3://bucket/prefix",
    "import": "copy s3://bucket/prefix to a directory",
    "verify": "compare two trees (like rclone check)",
    "convert": "turn a flat bucket into a hierarchical namespace (metadata only, irreversible)",
    "stream-task": "start a task on the stream's settings: a batch import or export, or a "
    "stream-import / stream-export that runs until stopped",
}
METAVARS = {
    "source": "SRC",
    "destination": "DST",
    "bucket_url": "BUCKET",
    "metadata": "URL",
    "stream": "NAME",
    "job": "JOB",
}

Verbose = Annotated[bool, Parameter(name=["--verbose", "-v"], help="show Prefect's log")]
AsJson = Annotated[bool, Parameter(name="--json", help="print the result as JSON")]
Positive = Annotated[float, Field(gt=0)]


def _quiet_prefect(verbose: bool) -> None:
    """Prefect's console log only with -v: the CLI prints its own progress and summary."""
    from flows.local_api import prefect_defaults

    prefect_defaults(None if verbose else "CRITICAL")


# --- values: checked by the model's own types, one line naming the flag ----------------------


def _problem(flag: str, exc: ValidationError, value: Any) -> UsageError:
    error = exc.errors()[0]
    if error["type"] == "literal_error":
        choices = error["ctx"]["expected"]
        return UsageError(f"argument {flag}: invalid choice: {value!r} (choose from {choices})")
    if error["type"] == "greater_than":
        bound = error["ctx"]["gt"]
        message = f"must be greater than {int(bound) if bound == int(bound) else bound}"
    else:
        message = error["msg"].removeprefix("Value error, ")
        message = f"{message[0].lower()}{message[1:]}"
    if repr(value) not in message:
        message += f": {value!r}"
    return UsageError(f"argument {flag}: {message}")


def checked(flag: str, kind: Any, value: Any) -> Any:
    """`value` as `kind` (an option type of `tasks.options`) validates it, or a UsageError."""
    if value is None:
        return None
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError as exc:
        raise _problem(flag, exc, value) from None


def key_values(flag: str, pairs: list[str] | None) -> dict[str, Any] | None:
    """['k=v', ...] → {k: v} (true/false become booleans); None when none were given."""
    found: dict[str, Any] = {}
    for text in pairs or ():
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise UsageError(f"argument {flag}: expected KEY=VALUE, got {text!r}")
        lowered = value.lower()
        found[key] = lowered == "true" if lowered in ("true", "false") else value
    return found or None


# --- the job commands, derived from the options model -----------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _cli(name: str, field) -> Cli | None:
    """How the option is spelled on the command line when not as its own name: its `Cli`
    marker, or `--no-NAME` for a switch that is on unless turned off."""
    cli = cli_of(field)
    if cli is None and field.annotation is bool and field.default is True:
        return Cli(_flag(f"no_{name}"), negate=True)
    return cli


def _cli_parameters(job: str) -> list[inspect.Parameter]:
    """The command line's parameters for `job`: its endpoints, then a flag per option."""
    parameters = []
    for name, kind in ENDPOINTS[job].items():
        field = TypeAdapter(kind).json_schema()
        spec = Parameter(
            name=_flag(name) if name in KEYWORD_ENDPOINTS else None,
            help=field.get("description"),
            metavar=METAVARS.get(name),
        )
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY
                if name in KEYWORD_ENDPOINTS
                else inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=Annotated[str, spec],
            )
        )
    for name in Options.of(job):
        field = Options.model_fields[name]
        cli = _cli(name, field)
        flag = cli.flag if cli else _flag(name)
        text = cli.help if cli and cli.help else field.description
        if cli and cli.negate or field.annotation is bool:
            kind: Any = bool
        elif cli and cli.metavar == "KEY=VALUE" or _is_list(field.annotation):
            kind = list[str] | None
        else:
            kind = str | None
            if field.default is not None:
                text = f"{text} [default: {_shown(field.default)}]"
        spec = Parameter(
            name=flag,
            help=text,
            metavar=cli.metavar if cli and cli.metavar else _metavar(field),
            show_default=False,
            negative_iterable=(),
        )
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=False if kind is bool else None,
                annotation=Annotated[kind, spec],
            )
        )
    for name, kind in (("json", AsJson), ("verbose", Verbose)):
        parameters.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=kind)
        )
    return parameters


def _metavar(field) -> str | None:
    """What the help shows a flag takes: its choices, a size, or a number."""
    if typing.get_origin(field.annotation) is Literal:
        return "{" + ",".join(typing.get_args(field.annotation)) + "}"
    if any(getattr(m, "func", None) is parse_size for m in field.metadata):
        return "SIZE"
    kinds = {field.annotation, *typing.get_args(field.annotation)}
    if int in kinds:
        return "N"
    if float in kinds:
        return "NUMBER"
    if str in kinds:
        return "TEXT"
    return None


def _is_list(annotation: Any) -> bool:
    kinds = [annotation, *typing.get_args(annotation)]
    return any(typing.get_origin(k) is list for k in kinds)


def _shown(default: Any) -> str:
    from tasks.options import DEFAULT_BYTES

    return "2GiB" if default == DEFAULT_BYTES else str(default)


def flow_parameters(job: str, given: dict[str, Any]) -> dict[str, Any]:
    """The flow's parameters from a job command's parsed arguments: its endpoints, and each
    option that was given, checked by the model's own type (one line naming the flag)."""
    parameters = {
        name: checked(METAVARS.get(name, name), kind, given[name])
        for name, kind in ENDPOINTS[job].items()
    }
    for name in Options.of(job):
        field = Options.model_fields[name]
        cli = _cli(name, field)
        flag = cli.flag if cli else _flag(name)
        value = given.get(name)
        if cli and cli.negate:
            value = not value if value else None
        elif cli and cli.metavar == "KEY=VALUE":
            value = key_values(flag, value)
        elif field.annotation is bool:
            value = value or None
        if value is None:
            continue
        parameters[name] = checked(flag, Annotated[(field.annotation, *field.metadata)], value)
    return parameters


def _job_command(job: str, run: Callable[[str, dict[str, Any], dict[str, Any]], int]):
    """A cyclopts command for `job` whose body is `run(job, flow parameters, cli-only flags)`."""

    def command(*args: Any, **kwargs: Any) -> int:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        given = dict(bound.arguments)
        flags = {"json": given.pop("json"), "verbose": given.pop("verbose")}
        return run(job, flow_parameters(job, given), flags)

    signature = inspect.Signature(_cli_parameters(job), return_annotation=int)
    command.__signature__ = signature  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    command.__name__ = job
    command.__doc__ = JOB_HELP[job]
    return command


def _job_app(run) -> App:
    jobs = App(name="jobs", help_on_error=False, default_parameter=Parameter(negative=()))
    for job in JOBS:
        jobs.command(_job_command(job, run), name=job)
    return jobs


#: The flow of each job command, by its name in `flows`.
FLOWS = {
    "export": "export_data",
    "import": "import_data",
    "verify": "verify_data",
    "convert": "convert_to_hns",
}


def _run_job(job: str, parameters: dict[str, Any], flags: dict[str, Any]) -> int:
    """Check the endpoints (before Prefect starts), then run the job's flow with a progress bar,
    and print its summary."""
    console = Console()
    if parameters.get("credentials_block"):  # the block lives in the Prefect API
        console.waiting_for_prefect()
    preflight(job, parameters)
    _warn_plain_secrets(**{k: v for k, v in parameters.items() if k.endswith("options")})
    import flows

    # only this job's flow is loaded (conversion's brings SQLAlchemy, for one)
    flow = getattr(flows, FLOWS[job])
    console.waiting_for_prefect()
    result = console.run(job, lambda: flow(**parameters))
    console.summary(result, as_json=flags["json"])
    return result.exit_code


def preflight(job: str, parameters: dict[str, Any]) -> None:
    """Check both endpoints before starting Prefect, so a wrong path or bucket fails in a second
    with one line, not after the API has started. Raises FerryError."""
    from flows.workers import check_dask
    from tasks.endpoints import BucketPrefix, Directory, parse_endpoint, transfer_endpoints
    from tasks.listing import Filter
    from tasks.preflight import check_bucket, check_directory, check_metadata_url, whole_bucket
    from tasks.report_dir import check_report_dir

    options = Options(**{k: v for k, v in parameters.items() if k in Options.model_fields})
    check_report_dir(options.report_dir)
    check_dask(options)
    block = options.credentials_block

    def side(url: str, storage: dict | None) -> dict | None:
        if not block:
            return storage
        from flows.credentials import for_url

        return for_url(url, storage, block)

    if job == "convert":
        url = parameters["bucket_url"]
        bucket = whole_bucket(url, side(url, options.storage_options))
        check_metadata_url(parameters["metadata"])
        check_bucket(bucket)
        return
    Filter(options.include, options.exclude)
    source, destination = parameters["source"], parameters["destination"]
    source_options = side(source, options.source_options)
    destination_options = side(destination, options.destination_options)
    if job in ("export", "import"):
        directory, bucket = transfer_endpoints(
            job, source, destination, source_options, destination_options
        )
        check_directory(directory, must_exist=job == "export")
        check_bucket(bucket, must_hold_objects=job == "import" and not options.allow_empty)
        return
    for url, storage in ((source, source_options), (destination, destination_options)):
        endpoint = parse_endpoint(url, storage)
        if isinstance(endpoint, Directory):
            check_directory(endpoint, must_exist=True)
        elif isinstance(endpoint, BucketPrefix):
            check_bucket(endpoint)


# --- the application ---------------------------------------------------------------------------

app = App(
    name="ferry",
    help="Move data between a file system and an S3-compatible bucket, with a Parquet manifest "
    "of every entry.",
    version_flags=(),
    help_on_error=False,
    default_parameter=Parameter(negative=()),
)
for _job in JOBS:
    app.command(_job_command(_job, _run_job), name=_job)

# schedules ------------------------------------------------------------------------------------

schedule = App(
    name="schedule",
    help="named schedules of export, import, verify or convert, run by ferry serve",
    help_on_error=False,
)
app.command(schedule)


def _schedule_parameters(job: str, parameters: dict[str, Any], flags: dict[str, Any]):
    return job, parameters


_SCHEDULED_JOBS = _job_app(_schedule_parameters)


@schedule.command(name="create")
def schedule_create(
    name: Annotated[
        str, Parameter(help="the schedule's name: lowercase letters, digits and dashes")
    ],
    *job: Annotated[
        str,
        Parameter(
            allow_leading_hyphen=True,
            metavar="JOB",
            help="the job and its arguments and options, as its own command takes them",
        ),
    ],
    cron: Annotated[
        str | None, Parameter(metavar="EXPRESSION", help="a cron expression, e.g. '0 2 * * *'")
    ] = None,
    interval: Annotated[
        str | None, Parameter(metavar="SECONDS", help="run every SECONDS s")
    ] = None,
    timezone: Annotated[
        str | None, Parameter(metavar="TZ", help="the cron's time zone (UTC)")
    ] = None,
    verbose: Verbose = False,
) -> int:
    """schedule a job with its options, e.g.: ferry schedule create nightly --cron '0 2 * * *'
    export /data s3://bucket/data --bandwidth-mbps 200"""
    from deployments import schedules

    if (cron is None) == (interval is None):
        raise UsageError("give one of --cron EXPRESSION or --interval SECONDS")
    seconds = checked("--interval", Positive, interval)
    if not job:
        raise UsageError(f"name the job to schedule: one of {', '.join(JOBS)}")
    command, bound, _ = _SCHEDULED_JOBS.parse_args(
        list(job), exit_on_error=False, print_error=False
    )
    kind, parameters = command(*bound.args, **bound.kwargs)
    schedules.schedule_of(cron, seconds, timezone)
    _check_job(kind, parameters)
    _warn_plain_secrets(**{k: v for k, v in parameters.items() if k.endswith("options")})
    Console().waiting_for_prefect()
    found = schedules.create_schedule(
        name, kind, parameters, cron=cron, interval=seconds, timezone=timezone
    )
    print(
        f"created schedule {found['name']}: {found['job']} {found['schedule']}; "
        "`ferry serve` runs it"
    )
    return EXIT_OK


SHOWN_PARAMETERS = ("source", "destination", "bucket_url")


@schedule.command(name="list")
def schedule_list(*, json_: AsJson = False, verbose: Verbose = False) -> int:
    """every schedule of ferry's jobs (also those added in the UI)"""
    from deployments import schedules

    Console().waiting_for_prefect()
    found = schedules.list_schedules()
    if json_:
        print(json.dumps(found, indent=2))
        return EXIT_OK
    if not found:
        print("no schedules (create one with `ferry schedule create`)")
    for s in found:
        state = "active" if s["active"] and not s["deployment_paused"] else "paused"
        shown = " ".join(f"{k}={v}" for k, v in s["parameters"].items() if k in SHOWN_PARAMETERS)
        print(f"{s['name']}\t{s['job']}\t{s['schedule']}\t{state}\t{shown}")
    return EXIT_OK


@schedule.command(name="pause")
def schedule_pause(name: str, *, verbose: Verbose = False) -> int:
    """stop a schedule making runs (it stays stored)"""
    return _set_active(name, False)


@schedule.command(name="resume")
def schedule_resume(name: str, *, verbose: Verbose = False) -> int:
    """let a paused schedule make runs again"""
    return _set_active(name, True)


def _set_active(name: str, active: bool) -> int:
    from deployments import schedules

    Console().waiting_for_prefect()
    schedules.set_active(name, active)
    print(f"{'resumed' if active else 'paused'} schedule {name}")
    return EXIT_OK


@schedule.command(name="delete")
def schedule_delete(name: str, *, verbose: Verbose = False) -> int:
    """remove a schedule"""
    from deployments import schedules

    Console().waiting_for_prefect()
    schedules.delete_schedule(name)
    print(f"deleted schedule {name}")
    return EXIT_OK


def _check_job(job: str, parameters: dict[str, Any]) -> None:
    """What the job's own command checks before it runs (paths, buckets, the metadata store),
    so a schedule is not stored to fail at 2 a.m.; an import's prefix may still be empty."""
    from tasks.preflight import check_metadata_url

    if job == "convert":
        check_metadata_url(parameters["metadata"])
        return
    if parameters.get("credentials_block"):
        Console().waiting_for_prefect()
    preflight(job, {**parameters, "allow_empty": True})


# streams --------------------------------------------------------------------------------------

stream = App(
    name="stream", help="data streams: directory ↔ bucket prefix links", help_on_error=False
)
app.command(stream)

Bandwidth = Annotated[
    str | None,
    Parameter(
        name="--bandwidth-mbps", metavar="MB/S", help="cap on each task of the stream, in MB/s"
    ),
]
Minutes = Annotated[str | None, Parameter(metavar="MINUTES", help="interval of automatic updates")]


@stream.command(name="create")
def stream_create(
    name: str,
    directory: str,
    bucket_url: Annotated[str, Parameter(metavar="s3://bucket/prefix")],
    *,
    endpoint_url: Annotated[
        str | None, Parameter(help="S3 endpoint (default: the environment's)")
    ] = None,
    no_ssl: Annotated[bool, Parameter(help="reach the endpoint over plain HTTP")] = False,
    key: Annotated[
        str | None, Parameter(help="access key id (kept in a Prefect Secret block)")
    ] = None,
    secret: Annotated[
        str | None,
        Parameter(help="secret key; '-' reads it from standard input", allow_leading_hyphen=True),
    ] = None,
    bandwidth_mbps: Bandwidth = None,
    description: str = "",
    auto_update: Annotated[
        bool, Parameter(help="import the --prefix prefixes every --refresh-minutes")
    ] = False,
    refresh_minutes: Minutes = None,
    prefix: Annotated[
        list[str] | None,
        Parameter(name="--prefix", negative_iterable=(), help="auto-update prefix, like /a/b/"),
    ] = None,
    verbose: Verbose = False,
) -> int:
    """create a data stream (checked before it is stored)"""
    bandwidth = checked("--bandwidth-mbps", Positive, bandwidth_mbps)
    minutes = checked("--refresh-minutes", Positive, refresh_minutes)
    secret = sys.stdin.readline().strip() if secret == "-" else secret
    streams = _streams()
    streams.create_stream(
        name,
        directory,
        bucket_url,
        endpoint_url=endpoint_url,
        use_ssl=not no_ssl,
        key=key,
        secret=secret,
        bandwidth_mbps=bandwidth,
        description=description,
        auto_update=auto_update,
        refresh_minutes=minutes,
        prefixes=prefix or [],
    )
    Console().out.print(f"created data stream {name}")
    return EXIT_OK


def _streams():
    Console().waiting_for_prefect()
    from deployments import streams

    return streams


@stream.command(name="list")
def stream_list(*, verbose: Verbose = False) -> int:
    """the data streams and their states"""
    streams = _streams()
    for name, found in streams.all_streams().items():
        Console().out.print(
            f"{name}\t{found.state}\t{found.directory} ↔ {found.bucket_url}",
            highlight=False,
            soft_wrap=True,
        )
    return EXIT_OK


@stream.command(name="show")
def stream_show(name: str, *, verbose: Verbose = False) -> int:
    """settings, state and recent tasks"""
    streams = _streams()
    shown = {
        "name": name,
        **streams.load(name).settings(),
        "deployments": streams.deployment_states(name),
        "recent_tasks": streams.recent_tasks(name),
    }
    print(json.dumps(shown, indent=2, default=str))
    return EXIT_OK


@stream.command(name="modify")
def stream_modify(
    name: str,
    *,
    refresh_minutes: Minutes = None,
    add_prefix: Annotated[
        list[str] | None, Parameter(negative_iterable=(), help="another auto-update prefix")
    ] = None,
    bandwidth_mbps: Bandwidth = None,
    description: str | None = None,
    verbose: Verbose = False,
) -> int:
    """refresh interval, added prefixes, bandwidth, description"""
    bandwidth = checked("--bandwidth-mbps", Positive, bandwidth_mbps)
    minutes = checked("--refresh-minutes", Positive, refresh_minutes)
    _streams().modify_stream(
        name,
        refresh_minutes=minutes,
        add_prefixes=add_prefix or [],
        bandwidth_mbps=bandwidth,
        description=description,
    )
    Console().out.print(f"modified data stream {name}")
    return EXIT_OK


def _stream_verb(verb: str, text: str):
    def command(name: str, *, verbose: Verbose = False) -> int:
        getattr(_streams(), f"{verb}_stream")(name)
        Console().out.print(f"{verb}: data stream {name}")
        return EXIT_OK

    command.__doc__ = text
    command.__name__ = f"stream_{verb}"
    return command


for _verb, _text in (
    ("stop", "cancel running tasks, pause schedules, refuse new tasks"),
    ("enable", "undo stop"),
    ("delete", "cancel, remove deployments and limits, forget the stream"),
):
    stream.command(_stream_verb(_verb, _text), name=_verb)


def _run_stream_task(job: str, parameters: dict[str, Any], flags: dict[str, Any]) -> int:
    console = Console()
    console.waiting_for_prefect()  # before Prefect is imported (see flows.local_server.use)
    from flows.streams import stream_task

    title = f"{parameters['stream']} {parameters['job']}"
    result = console.run(title, lambda: stream_task(**parameters))
    console.summary(result, as_json=flags["json"])
    return result.exit_code


stream.command(_job_command("stream-task", _run_stream_task), name="run")


@stream.command(name="submit")
def stream_submit(
    task: Annotated[str, Parameter(metavar="TASK", help="the running stream export's id")],
    *paths: Annotated[str, Parameter(metavar="PATH")],
    verbose: Verbose = False,
) -> int:
    """hand files to a running stream export (TASK is its id)"""
    if not paths:
        raise UsageError("name at least one PATH to hand over")
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise UsageError("no such file", where=", ".join(missing))
    Console().waiting_for_prefect()
    from flows.stream_tasks import submit_files

    try:
        submit_files(task, list(paths))
    except ValueError:
        raise UsageError("TASK is the stream task's id (a UUID)", where=task) from None
    Console().out.print(f"submitted {len(paths)} files to {task}")
    return EXIT_OK


# the rest -------------------------------------------------------------------------------------

credentials = App(
    name="credentials", help="store an S3 access key where Prefect masks it", help_on_error=False
)
app.command(credentials)


@credentials.command(name="create")
def credentials_create(
    name: str,
    *,
    key: Annotated[str, Parameter(help="access key id")],
    secret: Annotated[
        str,
        Parameter(help="secret key; '-' reads it from standard input", allow_leading_hyphen=True),
    ],
    token: Annotated[str | None, Parameter(help="session token, for temporary keys")] = None,
    verbose: Verbose = False,
) -> int:
    """create (or replace) a ferry-s3-credentials block"""
    secret = sys.stdin.readline().strip() if secret == "-" else secret
    if not secret:
        raise UsageError("empty secret")
    Console().waiting_for_prefect()
    from flows.credentials import save_credentials

    save_credentials(name, key, secret, token)
    print(f"saved ferry-s3-credentials block {name}")
    return EXIT_OK


@app.command(name="serve")
def serve_command(*, verbose: Verbose = False) -> int:
    """serve ferry's deployments (and each data stream's)"""
    _need_a_server()
    from deployments.serve import serve

    serve()
    return EXIT_OK


server = App(
    name="server",
    help="ferry's local Prefect server, used when no PREFECT_API_URL is set",
    help_on_error=False,
)
app.command(server)


@server.command(name="start")
def server_start(*, verbose: Verbose = False) -> int:
    """start it in the background (commands start it themselves when they need it)"""
    from flows import local_server

    found = local_server.running()
    if found is None:
        with Console().err.status("Starting ferry's local Prefect server (20-30 s)..."):
            found, _ = local_server.start()
    print(f"ferry's local Prefect server is running: UI {found.ui_url}, API {found.api_url}")
    return EXIT_OK


@server.command(name="status")
def server_status(*, verbose: Verbose = False) -> int:
    """whether it runs, and where (exit 1 when it does not); and the warm ferry process"""
    from flows import local_server, warm

    for pid, served in warm.running():
        print(f"ferry's warm process is running: pid {pid}, {served} commands run")
    found = local_server.running()
    if found is None:
        print("ferry's local Prefect server is not running")
        return 1
    print(f"ferry's local Prefect server is running: UI {found.ui_url}, API {found.api_url}")
    return EXIT_OK


@server.command(name="stop")
def server_stop(*, verbose: Verbose = False) -> int:
    """stop it, and the warm process of the ferry command (the runs it recorded are kept for
    the next start)"""
    from flows import local_server, warm

    warm.stop_all()
    found = local_server.stop()
    print(
        f"stopped ferry's local Prefect server ({found.ui_url})"
        if found
        else "ferry's local Prefect server was not running"
    )
    return EXIT_OK


@app.command(name="demo")
def demo_command(
    *,
    keep: Annotated[
        str | None,
        Parameter(metavar="DIR", help="build the demo in DIR instead of a temporary one"),
    ] = None,
    verbose: Verbose = False,
) -> int:
    """export, import and verify a sample tree on a local S3 server (needs nothing running)"""
    from flows.demo import run_demo

    return run_demo(Console(), keep=keep)


def main(argv: Sequence[str] | None = None) -> int:
    from tasks.errors import FerryError

    tokens = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    if not tokens:
        app.help_print([])
        return EXIT_CANNOT_RUN
    try:
        command, bound, _ = app.parse_args(tokens, exit_on_error=False, print_error=False)
        verbose = bool(bound.arguments.get("verbose"))
        # a service's log is its output
        _quiet_prefect(verbose or command is serve_command)
        outcome = command(*bound.args, **bound.kwargs)
        return outcome if isinstance(outcome, int) else EXIT_OK
    except CycloptsError as exc:
        print(f"ferry: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except FerryError as exc:
        result = getattr(exc, "result", None)
        if result is not None:  # TaskCancelled, EntriesFailed: the run ended Cancelled / Failed
            Console().summary(result, as_json="--json" in tokens)
            return result.exit_code
        print(f"ferry: error: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        print("ferry: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place an unforeseen error meets the user
        if verbose:
            traceback.print_exc()
        busy = _api_busy(exc)
        if busy:
            print(f"ferry: error: {busy}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        print(
            f"ferry: unexpected error: {type(exc).__name__}: {detail}"
            + ("" if verbose else " (run with -v for the traceback)"),
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED


def _api_busy(exc: Exception) -> str | None:
    """The message of a Prefect API that stayed busy through all of Prefect's client retries (a
    server on SQLite answers 503 when writes race), or None for any other error."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if type(exc).__name__ != "PrefectHTTPStatusError" or status not in (429, 502, 503):
        return None
    url = str(getattr(response, "url", ""))
    return (
        f"the Prefect API is busy: it answered {status} {response.reason_phrase} to every try "
        f"({url.split('/api/')[0]}/api): run the command again (a Prefect server on SQLite does "
        "this under many concurrent writes; on PostgreSQL it does not)"
    )


def _one_line(exc: CycloptsError) -> str:
    """cyclopts' message without its box: one line."""
    return " ".join(str(exc).split())


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
    """Serving needs a running Prefect server (with its scheduler): PREFECT_API_URL's, or ferry's
    local one when it runs; serving never starts one unasked."""
    from flows import local_server
    from flows.local_api import needs_local_api

    if not needs_local_api():
        return
    server = local_server.running()
    if server is None:
        raise UsageError(
            "ferry serve needs a running Prefect server: `ferry server start` starts ferry's "
            "own; or start one with `prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    local_server.use(server)


if __name__ == "__main__":
    sys.exit(main())
