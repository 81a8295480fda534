"""Pages generated from the code say what the code does: a stale one fails here (regenerate it as the message says)."""

from __future__ import annotations

from tests.conftest import ROOT


def test_the_audit_tables_page_is_current() -> None:
    from pipeline.audit.export import schema_markdown

    page = ROOT / "docs" / "audit-tables.md"
    assert page.read_text() == schema_markdown(), (
        "docs/audit-tables.md is stale: python -c 'from pipeline.audit.export import schema_markdown; "
        "open(\"docs/audit-tables.md\", \"w\").write(schema_markdown())'")
