"""The job file's JSON Schema (`rokt-pipeline schema`, docs/job-file.schema.json) takes every job file the project
ships as written, `${VAR}` placeholders and all, and refuses a misspelt key, as the loader does."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, ValidationError

from pipeline.config import load_job
from pipeline.job_schema import job_file_schema
from tests.conftest import ROOT

JOB_FOLDERS = ("configs", "configs/demo", "dags/jobs")
JOB_FILES = sorted(path for folder in JOB_FOLDERS for path in (ROOT / folder).glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = job_file_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _problems(validator: Draft202012Validator, document: Any) -> list[str]:
    """Every message, the ones inside oneOf/anyOf branches included (a misspelt destination key is one of those)."""
    def walk(errors: Any) -> list[ValidationError]:
        return [deeper for error in errors for deeper in (error, *walk(error.context))]

    return [error.message for error in walk(validator.iter_errors(document))]


def _job(relative: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / relative).read_text())


def test_every_folder_of_job_files_has_some() -> None:
    for folder in JOB_FOLDERS:
        assert any(path.parent == ROOT / folder for path in JOB_FILES), folder


@pytest.mark.parametrize("path", JOB_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_shipped_job_file_is_valid_as_written(validator: Draft202012Validator, path: Path) -> None:
    assert _problems(validator, yaml.safe_load(path.read_text())) == []


def test_every_yaml_example_in_the_docs_parses_and_their_job_files_load(tmp_path: Path) -> None:
    schema = Draft202012Validator(job_file_schema())
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    jobs = 0
    for page in pages:
        for number, block in enumerate(re.findall(r"```yaml\n(.*?)```", page.read_text(), flags=re.S)):
            document = yaml.safe_load(block)  # every example is valid YAML
            if isinstance(document, dict) and {"job", "source", "destination"} <= set(document):
                assert _problems(schema, document) == [], page.name
                job_file = tmp_path / f"{page.stem}-{number}.yaml"
                job_file.write_text(block)
                load_job(job_file, environment={name: "x" for name in re.findall(r"\$\{(\w+)\}", block)})
                jobs += 1
    assert jobs >= 2  # the README's first job and the reference's annotated one


def test_a_misspelt_key_fails_the_schema_and_the_loader(validator: Draft202012Validator, tmp_path: Path) -> None:
    document = _job("configs/audience_include.yaml")
    document["destination"]["acount_id"] = document["destination"].pop("account_id")
    problems = _problems(validator, document)
    assert any("'acount_id' was unexpected" in problem for problem in problems), problems

    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(document))
    with pytest.raises(Exception, match="acount_id: unknown key"):
        load_job(job_file, environment={"ROKT_PUBLIC_KEY": "k", "ROKT_SECRET_KEY": "s"})


@pytest.mark.parametrize("change", [
    lambda job: job["source"].update(colums=job["source"].pop("columns")),
    lambda job: job.update(outptu={"uri": "out/"}),
    lambda job: job["destination"].update(endpoint="audience_imports"),
    lambda job: job["destination"].update(action="includ"),
    lambda job: job["destination"].update(limits={"batch_size": "lots"}),
    lambda job: job["destination"].update(limits={"batch_size": 0}),
    lambda job: job["destination"].update(limits={"requests_per_second": 2, "requests_per_minute": 60}),
    lambda job: job["destination"].update(max_duration="45 minutes"),
    lambda job: job["destination"]["credentials"].update(public_kye="${ROKT_PUBLIC_KEY}"),
    lambda job: job.pop("destination"),
], ids=["source.colums", "outptu", "unknown endpoint", "action", "batch_size text", "batch_size 0", "two rates",
        "max_duration", "credentials key", "no destination"])
def test_what_the_loader_refuses_the_schema_refuses(validator: Draft202012Validator, change: Any) -> None:
    document = _job("configs/audience_include.yaml")
    change(document)
    assert _problems(validator, document)


def test_a_placeholder_is_taken_wherever_the_loader_takes_one(validator: Draft202012Validator, tmp_path: Path) -> None:
    document = _job("configs/audience_include.yaml")
    document["destination"].update(
        limits={"batch_size": "${BATCH_SIZE}", "requests_per_second": "${RATE}"}, action="${ACTION}",
        max_duration="${MAX_DURATION}", timeout_seconds="${TIMEOUT}")
    document["source"]["has_header"] = "${HAS_HEADER}"
    assert _problems(validator, document) == []

    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(document))
    job = load_job(job_file, environment={
        "ROKT_PUBLIC_KEY": "k", "ROKT_SECRET_KEY": "s", "BATCH_SIZE": "5000", "RATE": "2", "ACTION": "exclude",
        "MAX_DURATION": "45m", "TIMEOUT": "10", "HAS_HEADER": "true"})
    limits = job.destination.effective_limits
    assert (limits.batch_size, limits.requests_per_second, job.destination.action) == (5000, 2, "exclude")
    assert (job.destination.max_duration, job.destination.timeout_seconds, job.source.has_header) == (2700, 10, True)


def test_the_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == job_file_schema()
