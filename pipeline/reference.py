"""docs/job-file.md and docs/job-file.schema.json, generated from the job-file models in pipeline/config.py.

    python -m pipeline.reference [DOCS_DIR]     # rewrite both (default: docs/); a test fails while either is stale

Every key of a job file has a row: its type, its default and its description (the models' `Field(description=...)`).
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipeline.config import Destination, DestinationBase, JobConfig, Limits, OutputConfig, RetrySettings, SourceConfig
from pipeline.job_schema import job_file_schema_text

PAGE = "job-file.md"
SCHEMA = "job-file.schema.json"
REGENERATE = "python -m pipeline.reference"

_INTRO = f"""# Job file reference

A job file is one YAML mapping with four keys: `job`, `source`, `destination` and `output`. This page lists
every key with its type, its default and what it does. It is generated from the models in `pipeline/config.py`
(`{REGENERATE}` rewrites it; a test fails when it is stale), so it says what the code accepts.

- A key that is not on this page is an error: a misspelt key stops the job with exit 2, naming the key.
- `${{VAR}}` in any value is replaced from the environment before the file is checked; an unset variable is an
  error. Put every secret there, never in the file itself.
- A relative path is relative to the folder you run the command from.
- Some checks span several keys: one identifier column per row, `auth_url` beside `base_url`, limits within the
  endpoint's maximum. The loader makes them; `rokt-pipeline validate JOB.yaml` runs them all, and reads the input.

## A job file, annotated

```yaml
job: us-customers-suppress            # name: output folder, ledger key
source:
  uri: sample_data/customers.csv       # a file, a directory of parts, or a glob; CSV (optionally .gz) or Parquet
  format: csv                          # optional; inferred from the extension
  columns:                             # role -> column name in the file
    email: Email Address               # raw emails; or `sha256: <column>` for pre-hashed input (hex or base64)
  delimiter: ","                       # optional
  has_header: true                     # optional; without a header, columns are column_1, column_2, ...
  max_reject_fraction: 0.05            # optional; more invalid rows than this stops the run before it sends
destination:
  endpoint: audience_import            # or audience_import_legacy, data_deletion, nurture_unsubscribe, ...
  base_url: https://data.rokt.com      # required: where the data goes (no default). Plain http only for loopback.
  account_id: "123456789"              # required for audience_import, optional for the legacy endpoint
  action: include                      # include | exclude
  list: US_Customers                   # optional; the API defaults to AdvertiserDatabase
  send: sha256                         # sha256 (default, hex) | email
  credentials:                         # ${{VAR}} is read from the environment; an unset variable is an error
    public_key: ${{ROKT_PUBLIC_KEY}}
    secret_key: ${{ROKT_SECRET_KEY}}
  limits: {{batch_size: 100000, requests_per_second: 4, concurrency: 4}}   # defaults = the documented maxima
  timeout_seconds: 30                  # optional, per request
  retry: {{max_attempts: 6, base_delay_seconds: 0.5, max_delay_seconds: 30, max_retry_after_seconds: 120,
          max_throttle_seconds: 900}}   # 429s are waited out this long per request, not counted as attempts
  sync_mode: full                      # full (default) | incremental | mirror: see sync-modes.md
  max_duration: 45m                    # optional: stop starting requests after this long (exit 75; rerun to carry on)
output:
  uri: out/                            # this run writes out/<job>/<run_id>/
  rejects_include_values: false        # true writes the rejected value, as read, into rejects.csv
```

The [endpoints](endpoints.md) page has an example for each endpoint; `configs/` has a job file for each.

## Check job files in your editor

`rokt-pipeline schema` prints the JSON Schema of a job file; [`job-file.schema.json`](job-file.schema.json) is
the same, generated. It knows every key and its description, so an editor completes keys, shows what each
means, and marks a misspelt one. It accepts a `${{VAR}}` wherever a value may be one.

With the YAML extension for VS Code (Red Hat's; other editors use the same language server), either put this
comment on the first line of a job file (the path is relative to the file):

```yaml
# yaml-language-server: $schema=../docs/job-file.schema.json
```

or map your job files to it in `.vscode/settings.json`:

```json
{{"yaml.schemas": {{"./docs/job-file.schema.json": ["configs/**/*.yaml", "dags/jobs/*.yaml"]}}}}
```

In a project of your own, write the schema beside your jobs: `rokt-pipeline schema > job-file.schema.json`.
"""


def job_file_markdown() -> str:
    sections = [_INTRO, _section("Top level", JobConfig, "")]
    sections.append(_section("source", SourceConfig, "source."))
    sections += [_section(title, model, f"{path}.") for title, model, path in _nested(SourceConfig, "source")]
    sections.append(_destination_common())
    sections.append(_limits_section())
    sections.append(_section("destination.retry", RetrySettings, "destination.retry."))
    sections += [_endpoint_section(cls) for cls in _destination_classes()]
    sections.append(_section("output", OutputConfig, "output."))
    sections += [_section(title, model, f"{path}.") for title, model, path in _nested(OutputConfig, "output")]
    return "\n".join(sections)


def write(docs: Path) -> None:
    (docs / PAGE).write_text(job_file_markdown(), encoding="utf-8")
    (docs / SCHEMA).write_text(job_file_schema_text(), encoding="utf-8")


# --- sections ---------------------------------------------------------------------------------------------------

def _section(title: str, model: type[BaseModel], prefix: str, intro: str = "",
             keys: list[str] | None = None) -> str:
    rows = []
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    for key in keys or list(fields):
        field = fields[key]
        credentials = _credential_forms(field.annotation) if key == "credentials" else []
        if credentials:  # written out key by key: each endpoint has its own
            required = "**required**" if len(credentials) == 1 else "**one form required**"
            for form in credentials:
                rows += [_row(f"credentials.{sub.alias or sub_name}", sub, _property(form, sub.alias or sub_name),
                              default=required) for sub_name, sub in form.model_fields.items()]
            continue
        default = _ENDPOINT_DEFAULT if model is Limits or (key == "limits" and model is DestinationBase) else None
        rows.append(_row(key, field, _property(model, key), _link(field.annotation, prefix + key), default))
    lines = [f"## {title}", ""]
    if intro:
        lines += [intro, ""]
    elif model.__doc__ and title != "Top level":
        lines += [_one_line(model.__doc__), ""]
    lines += ["| key | type | default | what it does |", "|---|---|---|---|", *rows, ""]
    return "\n".join(lines)


def _destination_common() -> str:
    endpoints = ", ".join(f"`{_endpoint_name(cls)}`" for cls in _destination_classes())
    intro = (f"What every endpoint takes. `endpoint` says which API the job sends to ({endpoints}); each has keys of "
             "its own, in the sections after `destination.retry`.")
    return _section("destination", DestinationBase, "destination.", intro)


def _limits_section() -> str:
    rows = []
    for cls in _destination_classes():
        default, most = cls.default_limits, cls.max_limits
        documented = "Rokt's documentation" if cls.documented_limits else "the connector (Rokt documents none)"
        rows.append(f"| `{_endpoint_name(cls)}` | {default.batch_size:,} | {default.describe_rate()} | "
                    f"{default.concurrency} | {most.batch_size:,}, {most.describe_rate()}, {most.concurrency} | {documented} |")
    intro = ("How much a run asks of the endpoint. Each key left out takes the endpoint's default below, and no key may "
             "be above the endpoint's maximum. Give the rate per second or per minute, not both.")
    table = ["| endpoint | batch_size | rate | concurrency | maximum | set by |", "|---|---|---|---|---|---|", *rows, ""]
    return _section("destination.limits", Limits, "destination.limits.", intro) + "\n".join(["", *table])


def _endpoint_section(cls: type[DestinationBase]) -> str:
    own = ["endpoint"] + [field.alias or name for name, field in cls.model_fields.items()
                          if name not in DestinationBase.model_fields and name != "endpoint"]
    roles = " or ".join(f"`{role}`" for role in cls.identifier_roles)
    others = "".join(f", and optionally `{role}`" for role in cls.other_roles)
    per_row = "one identifier column" if cls.one_identifier_per_row else "one or more identifier columns"
    mirror = "It takes every `sync_mode`." if cls.mirror_supported else "It takes `sync_mode: full` or `incremental`."
    intro = (f"{_one_line(cls.model_fields['endpoint'].description or '')} Rokt's `base_url`: "
             f"`{cls.production_url}`. `source.columns`: {per_row}, {roles}{others}. {mirror}")
    text = _section(f"destination: {_endpoint_name(cls)}", cls, "destination.", intro, own)
    forms = _credential_forms(cls.model_fields["credentials"].annotation)
    if len(forms) > 1:
        choices = ", or ".join(" and ".join(f"`{key}`" for key in form.model_fields) for form in forms)
        text += f"\n`credentials` takes one form: {choices}.\n"
    return text


def _credential_forms(annotation: Any) -> list[type[BaseModel]]:
    """The forms `credentials` may take, the fullest first (a client id and secret before a fixed token)."""
    return sorted(_models(annotation), key=lambda form: -len(form.model_fields))


def _nested(model: type[BaseModel], path: str) -> list[tuple[str, type[BaseModel], str]]:
    nested = []
    for name, field in model.model_fields.items():
        for inner in _models(field.annotation):
            nested.append((f"{path}.{field.alias or name}", inner, f"{path}.{field.alias or name}"))
    return nested


def _destination_classes() -> list[type[DestinationBase]]:
    return _models(Destination)  # type: ignore[return-value]


def _endpoint_name(cls: type[BaseModel]) -> str:
    return typing.get_args(cls.model_fields["endpoint"].annotation)[0]


# --- one row ----------------------------------------------------------------------------------------------------

_ENDPOINT_DEFAULT = "the endpoint's"


def _row(key: str, field: Any, schema: dict[str, Any], link: str = "", default: str | None = None) -> str:
    kind = link or _type_text(schema)
    return f"| `{key}` | {kind} | {default or _default_text(field)} | {_cell(field.description or '')} |"


def _property(model: type[BaseModel], key: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    return schema["properties"][key]


def _link(annotation: Any, path: str) -> str:
    models = _models(annotation)
    if not models:
        return ""
    if any(issubclass(model, DestinationBase) for model in models):
        return "mapping: [destination](#destination), keyed by `endpoint`"
    return f"mapping: [{path}](#{path.replace('.', '')})"


def _type_text(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_type_text(choice) for choice in schema["anyOf"] if choice.get("type") != "null")
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return ", ".join(f"`{choice}`" for choice in schema["enum"])
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    bounds = ", ".join(f"{symbol} {schema[key]:g}" for key, symbol in
                       (("exclusiveMinimum", ">"), ("minimum", "≥"), ("exclusiveMaximum", "<"), ("maximum", "≤"))
                       if key in schema)
    if "number" in kinds and "string" in kinds:  # a duration: seconds, or 45m, 1h30m, 90s
        examples = ", ".join(f"`{example}`" for example in schema.get("examples", []))
        return _cell(f"number {bounds} (seconds), or string such as {examples}")
    text = " or ".join({"boolean": "`true` or `false`"}.get(kind, kind) for kind in kinds)
    if schema.get("format") == "password":
        text = "string (secret: write a `${VAR}`)"
    if bounds:
        text += " " + bounds
    if schema.get("minLength") == schema.get("maxLength") is not None:
        text += f" of {schema['maxLength']} character"
    if "pattern" in schema:
        text += f" matching `{schema['pattern']}`"
    return _cell(text)


def _default_text(field: Any) -> str:
    if field.is_required():
        return "**required**"
    value = field.default
    if isinstance(value, BaseModel) or value is None:
        return "–"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models in a type: `Limits | None` -> [Limits]; the destination union -> its six classes."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        return [model for argument in typing.get_args(annotation) for model in _models(argument)]
    return []


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
    write(folder)
    print(f"wrote {folder / PAGE} and {folder / SCHEMA}")
