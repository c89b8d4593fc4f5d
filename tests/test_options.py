"""One definition of each option: the model, the flows' parameters and UI forms, and the command
line all come from `tasks.options.Options`."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

import flows
from flows.streams import stream_task
from tasks.options import ENDPOINTS, Options, jobs_of

FLOWS = {
    "export": flows.export_data,
    "import": flows.import_data,
    "verify": flows.verify_data,
    "convert": flows.convert_to_hns,
    "stream-export": flows.stream_export,
    "stream-import": flows.stream_import,
    "stream-task": stream_task,
}


def ferry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        env=os.environ,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


@pytest.mark.parametrize("job", sorted(FLOWS))
def test_each_flow_takes_its_endpoints_then_its_options_as_the_model_defines_them(job):
    flow = FLOWS[job]
    parameters = inspect.signature(flow.fn).parameters
    assert list(parameters) == [*ENDPOINTS[job], *Options.of(job)]
    form = flow.parameters.properties
    for name in Options.of(job):
        field = Options.model_fields[name]
        assert parameters[name].default == field.default, name
        assert form[name]["description"] == field.description, name
        assert name in flow.__doc__, name  # the docstring's Args, which the UI shows


def test_every_option_belongs_to_a_job_and_is_described():
    for name, field in Options.model_fields.items():
        assert jobs_of(field), name
        assert field.description, name


def test_the_model_is_frozen_and_checks_bounds_once():
    options = Options(partition_bytes="1MiB", concurrency="4")
    assert options.partition_bytes == 2**20 and options.concurrency == 4
    with pytest.raises(ValidationError):
        options.concurrency = 8  # frozen
    with pytest.raises(ValidationError, match="less than or equal to 4096"):
        Options(concurrency=5000)
    with pytest.raises(ValidationError, match="Extra inputs"):
        Options(concurency=4)


@pytest.mark.parametrize(
    ("job", "command"),
    [(job, [job]) for job in ("export", "import", "verify", "convert")]
    + [("stream-task", ["stream", "run"])],
)
def test_the_command_has_a_flag_for_every_option_of_its_job(job, command):
    from flows.cli import _cli

    shown = ferry(*command, "--help")
    assert shown.returncode == 0, shown.stderr
    for name in Options.of(job):
        cli = _cli(name, Options.model_fields[name])
        flag = cli.flag if cli else "--" + name.replace("_", "-")
        assert flag in shown.stdout, (job, flag)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["export", "/tmp", "s3://b-x/y", "--bogus"], "Unknown option: --bogus"),
        (["export", "/tmp"], "requires an argument"),
        (["export", "/tmp", "s3://b-x/y", "--retries", "0"], "argument --retries: input should"),
        (["nonsense"], 'Unknown command "nonsense"'),
        (["schedule", "create", "n", "export", "/tmp", "s3://b-x/y"], "--cron EXPRESSION or"),
        (["schedule", "create", "n", "--cron", "0 2 * * *", "export", "/tmp"], "requires an"),
        (["stream", "run", "s", "sideways"], "argument JOB: invalid choice: 'sideways'"),
    ],
)
def test_a_wrong_command_line_is_one_line_with_exit_2(args, fragment):
    proc = ferry(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ferry: error: "), proc.stderr
    assert fragment in lines[0]
    assert "╭" not in proc.stderr  # cyclopts' boxes are not shown


def test_a_switch_that_is_on_by_default_gets_a_no_flag_that_turns_it_off():
    from flows.cli import _cli, flow_parameters

    assert _cli("watch", Options.model_fields["watch"]).flag == "--no-watch"
    given = {"source_dir": "/data", "destination": "s3://b/p", "watch": True}
    assert flow_parameters("stream-export", given)["watch"] is False
    assert "watch" not in flow_parameters("stream-export", {**given, "watch": False})
