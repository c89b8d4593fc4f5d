"""What the Prefect UI's run forms say: the parameter schema each flow registers."""

from __future__ import annotations

from flows import convert_to_hns, export_data, import_data


def form(flow) -> dict[str, str]:
    return {name: p.get("description", "") for name, p in flow.parameters.properties.items()}


def test_each_flow_describes_its_own_source_and_destination():
    assert "directory" in form(export_data)["source"]
    assert "s3://bucket/prefix" in form(export_data)["destination"]
    assert "s3://bucket/prefix" in form(import_data)["source"]
    assert "directory" in form(import_data)["destination"]
    assert "whole bucket" in form(convert_to_hns)["bucket_url"]


def test_glob_help_keeps_its_stars_in_code_spans():
    assert "`*.bin`" in form(export_data)["include"]
    assert "`ckpt/*/model.pt`" in form(import_data)["exclude"]


def test_credentials_block_is_on_every_form():
    from flows import verify_data

    for flow in (export_data, import_data, verify_data, convert_to_hns):
        assert "ferry-s3-credentials" in form(flow)["credentials_block"]


def test_partition_bytes_takes_a_size_with_its_unit(tmp_path, bucket, prefect_api):
    schema = export_data.parameters.properties["partition_bytes"]
    assert {"type": "string"} in schema["anyOf"]  # the form accepts "2GiB"
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(b"x" * 600_000)
    result = export_data(
        str(src), f"s3://{bucket}/sz", partition_bytes="1MB", report_dir=str(tmp_path / "r")
    )
    assert result.ok and result.counts["ok"] == 3
    import pandas as pd

    assert pd.read_parquet(result.manifest)["partition"].nunique() == 3  # 600 kB each, 1 MB cap


def test_the_stream_task_form_describes_every_parameter():
    from flows.streams import stream_task

    described_ = form(stream_task)
    assert set(described_) >= {"stream", "job", "auto_update"}
    assert all(described_[name] for name in ("stream", "job", "auto_update"))
    assert "four run at once" in described_["job"]


def test_the_convert_deployment_starts_as_a_check_and_says_a_real_run_is_irreversible():
    from deployments.schedules import job_deployment

    deployment = job_deployment("convert")
    assert deployment.parameters == {"check_only": True}
    assert "irreversible" in deployment.description


def test_the_postgresql_example_is_the_readme_url_form():
    import pathlib

    metadata = form(convert_to_hns)["metadata"]
    assert "postgresql+psycopg://user:password@host/db" in metadata
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    assert "postgresql+psycopg://user:password@host/db" in readme
