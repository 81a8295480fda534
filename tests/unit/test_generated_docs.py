"""Pages generated from the code say what the code does: a stale one fails here (regenerate it as the message says)."""

from __future__ import annotations

from tests.conftest import ROOT


def test_the_audit_tables_page_is_current() -> None:
    from pipeline.audit.export import schema_markdown

    page = ROOT / "docs" / "audit-tables.md"
    assert page.read_text() == schema_markdown(), (
        "docs/audit-tables.md is stale: python -c 'from pipeline.audit.export import schema_markdown; "
        "open(\"docs/audit-tables.md\", \"w\").write(schema_markdown())'")


def test_the_job_file_reference_and_its_schema_are_current() -> None:
    from pipeline.job_schema import job_file_schema_text
    from pipeline.reference import job_file_markdown

    pages = {"docs/job-file.md": job_file_markdown(), "docs/job-file.schema.json": job_file_schema_text()}
    stale = [name for name, text in pages.items() if (ROOT / name).read_text() != text]
    assert not stale, f"{' and '.join(stale)} stale: python -m pipeline.reference (it rewrites both from pipeline/config.py)"


def test_every_key_of_a_job_file_is_described() -> None:
    from pipeline.config import JobConfig

    schema = JobConfig.model_json_schema()
    undescribed = [f"{model.get('title', 'JobConfig')}.{key}"
                   for model in (schema, *schema["$defs"].values())
                   for key, value in model.get("properties", {}).items() if not value.get("description")]
    assert not undescribed, f"give these fields a Field(description=...) in pipeline/config.py: {undescribed}"
