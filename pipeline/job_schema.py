"""The JSON Schema of a job file, as written: for editors, `rokt-pipeline schema` and docs/job-file.schema.json.

It is the models' own schema (pipeline/config.py) with one addition. The loader replaces every `${VAR}` in a
string before it validates, so a value the models want as a number, a boolean, a choice or a pattern may still be
written `${VAR}` in the file; the schema accepts such a placeholder there too. Checks that span several keys
(one identifier column per row, `auth_url` beside `base_url`, limits within the endpoint's maximum) stay with the
loader: `rokt-pipeline validate` makes them all.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.config import JobConfig

DIALECT = "https://json-schema.org/draft/2020-12/schema"
PLACEHOLDER_SCHEMA: dict[str, Any] = {
    "type": "string", "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*\}",
    "description": "A value that holds a ${VAR}, replaced from the environment when the job is loaded.",
}
PLACEHOLDER = {"$ref": "#/$defs/Placeholder"}
_KEPT_OUTSIDE = ("title", "description", "default", "examples")


def job_file_schema() -> dict[str, Any]:
    schema = JobConfig.model_json_schema()
    _accept_placeholders(schema)
    definitions = {**schema.pop("$defs"), "Placeholder": PLACEHOLDER_SCHEMA}
    schema["title"] = "rokt-pipeline job file"
    return {"$schema": DIALECT, **schema, "$defs": definitions}  # the job's own keys first, for a reader


def job_file_schema_text() -> str:
    """The schema as the command prints it and docs/job-file.schema.json holds it."""
    return json.dumps(job_file_schema(), indent=2, ensure_ascii=False) + "\n"


def _accept_placeholders(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _accept_placeholders(item)
    elif isinstance(node, dict):
        for value in node.get("properties", {}).values():
            _with_placeholder(value)
        for value in node.values():
            _accept_placeholders(value)


def _with_placeholder(value: dict[str, Any]) -> None:
    """Let a key's value also be a `${VAR}` placeholder, where its own schema would refuse one."""
    if "anyOf" in value:
        if any(_refuses_placeholder(choice) for choice in value["anyOf"]) and PLACEHOLDER not in value["anyOf"]:
            value["anyOf"].append(PLACEHOLDER)
    elif _refuses_placeholder(value):
        outside = {key: value.pop(key) for key in _KEPT_OUTSIDE if key in value}
        inner = dict(value)
        value.clear()
        value.update(outside, anyOf=[inner, PLACEHOLDER])


def _refuses_placeholder(schema: dict[str, Any]) -> bool:
    if any(key in schema for key in ("$ref", "properties", "const", "anyOf")):
        return False  # a mapping, or the endpoint (which picks the destination's keys): never a placeholder
    types = schema.get("type", [])
    types = {types} if isinstance(types, str) else set(types)
    if "string" not in types:
        return bool(types & {"integer", "number", "boolean"})
    return "enum" in schema or "pattern" in schema or schema.get("maxLength", len("${X}")) < len("${X}")
