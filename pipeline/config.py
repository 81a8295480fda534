"""Typed job configuration: one YAML file is one job.

Unknown keys are errors (extra="forbid"), the destination is a union keyed on `endpoint`, `${VAR}` is read
from the environment, and secrets are `SecretStr` so they never show in a repr or a log line.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Mapping, Union
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, WithJsonSchema, field_validator,
    model_validator,
)

from pipeline.durations import parse_duration
from pipeline.errors import ConfigError

SyncMode = Literal["full", "incremental", "mirror"]
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ColumnMap(StrictModel):
    """Role -> column name in the source file."""

    email: str | None = Field(default=None, description="The column of raw email addresses.")
    sha256: str | None = Field(default=None, description=(
        "The column of pre-hashed emails: SHA-256 of the normalised address, hex or base64 (mixed is fine)."))
    phone: str | None = Field(default=None, description="network_privacy: the column of phone numbers, in any layout.")
    request_type: str | None = Field(default=None, description=(
        "network_privacy: the column saying NETWORK_OPT_OUT or NETWORK_DATA_DELETION for each row."))
    account_id: str | None = Field(default=None, description="account_deletion: the column of managed account ids.")

    def mapped(self) -> dict[str, str]:
        return {role: column for role, column in self.model_dump().items() if column is not None}


class S3Options(StrictModel):
    """Where and how to reach S3. Credentials come from the standard boto3 chain (environment, profile,
    instance or task role): never from the job file."""

    endpoint_url: str | None = Field(default=None, description=(
        "An S3-compatible store or a local test double instead of AWS (AWS_ENDPOINT_URL works too)."))
    region: str | None = Field(default=None, description="The bucket's AWS region.")
    profile: str | None = Field(default=None, description="A named profile from your AWS config files.")


class SourceConfig(StrictModel):
    """The input: one export of CSV or Parquet files, local or on S3."""

    uri: str = Field(description=(
        "A file, a folder of parts, or a glob (`**` for any depth), local or `s3://`; CSV (optionally .gz) or "
        "Parquet. A relative path is relative to the folder you run the command from."))
    format: Literal["csv", "parquet"] | None = Field(default=None, description=(
        "The files' format; when left out, it is inferred from the extension."))
    columns: ColumnMap = Field(description="Which column holds each identifier: role -> column name in the file.")
    s3: S3Options = Field(default=S3Options(), description="How to reach S3, when `uri` or `manifest` is on S3.")
    manifest: str | None = Field(default=None, description=(
        "A Redshift-style manifest (`entries[].url`, `mandatory`): read exactly the files it lists."))
    require_marker: str | None = Field(default=None, description=(
        "A file that must exist beside the export, e.g. `_SUCCESS`: refuse to start on an export still being written."))
    delimiter: str = Field(default=",", min_length=1, max_length=1, description="CSV: the field delimiter, one character.")
    has_header: bool = Field(default=True, description=(
        "CSV: whether the first line names the columns; without one, columns are named column_1, column_2, ..."))
    max_reject_fraction: float = Field(default=0.05, ge=0.0, le=1.0, description=(
        "More invalid rows than this fraction stops the run before anything is sent (usually a wrong column)."))

    @model_validator(mode="after")
    def _some_column(self) -> SourceConfig:
        if not self.columns.mapped():
            raise ValueError("map at least one identifier column, e.g. columns: {email: <column name>}")
        return self


RATE_KEYS = ("requests_per_second", "requests_per_minute")


def _optional_limits(schema: dict[str, Any]) -> None:
    """The schema of `limits` in a job file: each key may be left out, and only one rate may be given."""
    schema.pop("required", None)
    schema["not"] = {"required": list(RATE_KEYS), "properties": {key: {"not": {"type": "null"}} for key in RATE_KEYS}}


class Limits(StrictModel):
    """How much a run may ask of an endpoint: identifiers per request, request starts per second or per minute (one
    or the other, as the API publishes it), and requests in flight."""

    # In a job file every key is optional: what is left out is the endpoint's default (DestinationBase._fill_limits).
    model_config = ConfigDict(json_schema_extra=_optional_limits)

    batch_size: int = Field(gt=0, description="Identifiers per request (1 for the one-subject endpoints).")
    requests_per_second: float | None = Field(default=None, gt=0, description=(
        "Request starts per second, retries included. Give this or requests_per_minute, not both."))
    requests_per_minute: float | None = Field(default=None, gt=0, description=(
        "Request starts per minute, as the Partnerships API publishes its limit."))
    concurrency: int = Field(gt=0, description="Requests in flight at once, at most.")

    @model_validator(mode="after")
    def _one_rate(self) -> Limits:
        if (self.requests_per_second is None) == (self.requests_per_minute is None):
            raise ValueError("limits: set requests_per_second or requests_per_minute, not both")
        return self

    @property
    def rate_key(self) -> str:
        return "requests_per_second" if self.requests_per_second is not None else "requests_per_minute"

    @property
    def per_second(self) -> float:
        """The rate as starts per second, whichever way it was given."""
        return self.requests_per_second if self.requests_per_second is not None else self.requests_per_minute / 60

    def describe_rate(self) -> str:
        """'4/s' or '10/min', as the job file gives it."""
        return f"{self.requests_per_second:g}/s" if self.requests_per_second is not None else f"{self.requests_per_minute:g}/min"


# 45m, 1h30m, 90s or a number of seconds (pipeline/durations.py).
Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema({
    "type": ["number", "string"], "exclusiveMinimum": 0, "examples": ["45m", "1h30m", "90s"],
    "pattern": r"^\s*(\d+(\.\d+)?\s*[hH]\s*)?(\d+(\.\d+)?\s*[mM]\s*)?(\d+(\.\d+)?\s*[sS]?\s*)?$"})]


class RetrySettings(StrictModel):
    """How errors are retried: capped exponential backoff with jitter."""

    max_attempts: int = Field(default=6, ge=1, le=20, description=(
        "Attempts per request for timeouts, connection errors and 5xx, the first included."))
    base_delay_seconds: float = Field(default=0.5, ge=0, description="The backoff before the first retry; it doubles for each next one, with jitter.")
    max_delay_seconds: float = Field(default=30.0, ge=0, description="The longest backoff between two attempts.")
    max_retry_after_seconds: float = Field(default=120.0, ge=0, description=(
        "A Retry-After longer than this stops the run instead of retrying early (rerun later with the same run id)."))
    # per run: a hopeless run ends, it does not retry forever
    max_total_retry_seconds: float = Field(default=1800.0, ge=0, description=(
        "Retry waiting allowed per run; past it the run ends with exit 1 and the failed batches in the manifest."))
    # Per request: how long "slow down" answers (429, 503 with Retry-After) are waited out. They use up neither
    # max_attempts nor max_total_retry_seconds, which count real errors; past this the run stops, to resume later.
    max_throttle_seconds: float = Field(default=900.0, ge=0, description=(
        "How long 'slow down' answers (429, 503 with Retry-After) are waited out per request. They do not use up "
        "max_attempts; past this the run stops cleanly, to resume later."))


class BasicKeyPair(StrictModel):
    public_key: SecretStr = Field(description="The audience import public key, e.g. `${ROKT_PUBLIC_KEY}`.")
    secret_key: SecretStr = Field(description="The audience import secret key, e.g. `${ROKT_SECRET_KEY}`.")


class ApiKey(StrictModel):
    api_key: SecretStr = Field(description=(
        "The API key: the account's for the legacy audience import (e.g. `${ROKT_LEGACY_API_KEY}`), the webhook key "
        "for unsubscribes (e.g. `${ROKT_WEBHOOK_API_KEY}`)."))


class BearerToken(StrictModel):
    token: SecretStr = Field(description=(
        "Or: a fixed access token, e.g. `${ROKT_PARTNER_TOKEN}`, for jobs shorter than its life."))


class AppCredentials(StrictModel):
    app_id: SecretStr = Field(description="The OAuth app id, e.g. `${ROKT_APP_ID}`.")
    app_secret: SecretStr = Field(description="The OAuth app secret, e.g. `${ROKT_APP_SECRET}`.")


class ClientCredentials(StrictModel):
    """A Partnerships API client (rspub_… / rsec_…), exchanged for short-lived access tokens."""

    client_id: SecretStr = Field(description="The Partnerships API client id (`rspub_…`), e.g. `${ROKT_PARTNER_CLIENT_ID}`.")
    client_secret: SecretStr = Field(description=(
        "The Partnerships API client secret (`rsec_…`), e.g. `${ROKT_PARTNER_CLIENT_SECRET}`."))


class DestinationBase(StrictModel):
    """What every endpoint shares.

    Subclasses set `default_limits`, `max_limits` (the documented maximum where Rokt documents one, else a
    conservative cap) and `production_url` (Rokt's own base URL for the family, for the docs and the messages:
    `base_url` has no default, so a job always says where its data goes).
    """

    default_limits: ClassVar[Limits]
    max_limits: ClassVar[Limits]
    documented_limits: ClassVar[tuple[str, ...]] = ()  # the limits Rokt publishes (the others are the connector's caps)
    production_url: ClassVar[str]
    identifier_roles: ClassVar[tuple[str, ...]] = ("email", "sha256")
    other_roles: ClassVar[tuple[str, ...]] = ()
    one_identifier_per_row: ClassVar[bool] = True
    mirror_supported: ClassVar[bool] = False  # the API can remove what it was sent (include/exclude)

    base_url: str = Field(description=(
        "Where the data goes: Rokt's production URL for the endpoint, or a sandbox's (http://127.0.0.1:8787). No "
        "default. Plain http only for a loopback address; no user name or password in it (credentials go in "
        "`credentials`)."))
    limits: Limits | None = Field(default=None, description=(
        "Batch size, rate and concurrency. Each key left out is the endpoint's default; none may exceed its maximum."))
    timeout_seconds: float = Field(default=30.0, gt=0, le=600, description="Per request.")
    retry: RetrySettings = Field(default=RetrySettings(), description="How errors and 'slow down' answers are retried.")
    # What a run sends (pipeline/sync): the whole file, only what no earlier run had accepted, or (mirror) the
    # difference against the list as last accepted, removals included.
    sync_mode: SyncMode = Field(default="full", description=(
        "full: send the whole file; incremental: only what no earlier run accepted; mirror (audience import): "
        "include what is new and exclude what left the file."))
    max_exclude_fraction: float = Field(default=0.2, ge=0.0, le=1.0, description=(
        "mirror only: a run that would remove more of the list than this stops unless given --yes."))
    # Stop taking new requests after this long (from the run's start): the requests in flight finish and are
    # recorded, and the run exits 75 so that a rerun with the same run id carries on. --max-duration overrides it.
    max_duration: Duration | None = Field(default=None, description=(
        "Stop starting requests after this long (`45m`, `1h30m`, `90s` or seconds): those in flight finish and are "
        "recorded, the run exits 75, and the same run id carries on. `--max-duration` overrides it."))

    @model_validator(mode="before")
    @classmethod
    def _fill_limits(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = data.get("limits") or {}
            if isinstance(given, dict):
                defaults = cls.default_limits.model_dump(exclude_none=True)
                if any(given.get(key) is not None for key in RATE_KEYS):  # a rate given either way replaces the default
                    defaults = {key: value for key, value in defaults.items() if key not in RATE_KEYS}
                data = {**data, "limits": {**defaults, **given}}
        return data

    @model_validator(mode="after")
    def _within_maximum_limits(self) -> DestinationBase:
        assert self.limits is not None
        limits, maximum = self.limits, self.max_limits
        for key, given, most in (("batch_size", limits.batch_size, maximum.batch_size),
                                 ("concurrency", limits.concurrency, maximum.concurrency),
                                 (limits.rate_key, limits.per_second, maximum.per_second)):
            if given > most:
                kind = "documented maximum" if key in self.documented_limits else "maximum this endpoint allows"
                shown = (f"{getattr(limits, key):g}", maximum.describe_rate()) if key in RATE_KEYS else (given, most)
                raise ValueError(f"limits.{key}: {shown[0]} is above the {kind} of {shown[1]}")
        return self

    @model_validator(mode="after")
    def _sync_mode_fits_endpoint(self) -> DestinationBase:
        if self.sync_mode == "mirror":
            if not self.mirror_supported:
                raise ValueError("sync_mode: mirror needs an endpoint that can remove identifiers (audience_import, "
                                 "audience_import_legacy); use sync_mode: incremental")
            if getattr(self, "action", "include") != "include":
                raise ValueError("action: mirror sends include for identifiers new in the file and exclude for those that "
                                 "left it; set action: include")
            if getattr(self, "send", "sha256") != "sha256":
                raise ValueError("send: mirror removes identifiers by the SHA-256 it keeps in its state (never a raw email); "
                                 "use send: sha256")
        elif "max_exclude_fraction" in self.model_fields_set:
            raise ValueError("max_exclude_fraction: only used with sync_mode: mirror")
        return self

    @field_validator("base_url")
    @classmethod
    def _valid_base_url(cls, value: str) -> str:
        url = api_url(value, "base_url")
        assert url is not None
        return url

    @property
    def url(self) -> str:
        return self.base_url

    @property
    def is_production(self) -> bool:
        """Rokt's own API (any *.rokt.com host), as against a sandbox or a test double."""
        return is_rokt_host(self.base_url)

    def describe(self) -> dict[str, Any]:
        """Where the requests go and what they ask, in plain words: endpoint, URL, account, list, action, ..."""
        fields: dict[str, Any] = {"endpoint": self.endpoint, "url": self.url, "production": self.is_production}  # type: ignore[attr-defined]
        for attribute, (key, _) in _DESCRIBED.items():
            value = getattr(self, attribute, None)
            if value is not None:
                fields[key] = value
        return fields

    def describe_text(self) -> str:
        """'audience_import at https://data.rokt.com (PRODUCTION): account 123, list US_Customers, action include'."""
        return describe_destination(self.describe())

    @property
    def effective_limits(self) -> Limits:
        assert self.limits is not None
        return self.limits

    def target(self) -> str:
        """A digest of where the requests go and what they ask: endpoint, URL, account, list, action, ...

        Each manifest line carries it, so a resume under the same run id skips only what went to this target.
        """
        fields = {k: v for k, v in self.model_dump(mode="json", by_alias=True).items() if k not in _HOW_NOT_WHERE}
        fields["base_url"] = self.url
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


# What describe() names, besides the endpoint and URL: attribute -> (key, label), the fields that say which account,
# list and request (a dry run and a sync mode are named only when they are not the default).
_DESCRIBED = {
    "account_id": ("account_id", "account"), "parent_account_id": ("parent_account_id", "parent account"),
    "list_name": ("list", "list"), "action": ("action", "action"), "request_type": ("request_type", "request type"),
    "send": ("send", "sends"), "dry_run": ("dry_run", "dry run"), "sync_mode": ("sync_mode", "sync mode"),
}


def describe_destination(fields: dict[str, Any]) -> str:
    """A destination (DestinationBase.describe(), as plan.json and summary.json keep it) in one line of words."""
    where = f"{fields['endpoint']} at {fields['url']}" + (" (PRODUCTION)" if fields.get("production") else " (not production)")
    details = [f"{label} {fields[key]}" for key, label in _DESCRIBED.values()
               if key in fields and fields[key] not in (False, "full")]
    return f"{where}: {', '.join(details)}" if details else where


def is_rokt_host(url: str) -> bool:
    host = (urlparse(url).hostname or "").lower()
    return host == "rokt.com" or host.endswith(".rokt.com")


def api_url(value: str | None, key: str) -> str | None:
    """An API URL: https, or plain http to a loopback sandbox only."""
    if value is None:
        return None
    parsed = urlparse(value)
    # The value is never quoted: after ${VAR} interpolation it may hold whatever the variable held.
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{key} must be an http(s) URL (https://host/...)")
    if parsed.username is not None or parsed.password is not None:
        # A URL is written to logs, plan.json, summary.json and the audit tables: no credentials in it.
        raise ValueError(f"{key} must not hold a user name or password; credentials go in destination.credentials")
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        raise ValueError(f"{key}: plain http is allowed only for a loopback sandbox; use https")
    return value.rstrip("/")


# Destination settings that change how a run sends, not where or what: a resume keeps what was accepted.
_HOW_NOT_WHERE = frozenset({
    "credentials", "auth_url", "limits", "timeout_seconds", "retry", "sync_mode", "max_exclude_fraction",
    "max_accounts", "operation_poll_seconds", "max_duration",
})


JOB_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # it names a folder or an S3 prefix

_AUDIENCE_LIMITS = Limits(batch_size=100_000, requests_per_second=4, concurrency=4)


class _AudienceImport(DestinationBase):
    """What audience import v3 and the legacy audience import share: the list, the action and the limits."""

    mirror_supported: ClassVar[bool] = True
    default_limits: ClassVar[Limits] = _AUDIENCE_LIMITS
    max_limits: ClassVar[Limits] = _AUDIENCE_LIMITS
    documented_limits: ClassVar[tuple[str, ...]] = ("batch_size", "requests_per_second", "concurrency")
    production_url: ClassVar[str] = "https://data.rokt.com"

    account_id: str | None = Field(default=None, description="Your Rokt account id; optional here.")
    action: Literal["include", "exclude"] = Field(description="Add the identifiers to the list, or remove them.")
    list_name: str | None = Field(default=None, alias="list", min_length=1, description=(
        "The custom audience list; the API defaults to AdvertiserDatabase."))
    send: Literal["sha256", "email"] = Field(default="sha256", description=(
        "sha256: hex SHA-256 of each normalised email; email: the normalised address itself."))


class AudienceImportDestination(_AudienceImport):
    endpoint: Literal["audience_import"] = Field(description="Audience import v3 (`POST /v3/import/suppression`).")
    account_id: str = Field(min_length=1, description='Your Rokt account id, as a string ("123456789").')
    credentials: BasicKeyPair = Field(description="The public and secret key pair (Basic auth).")


class AudienceImportLegacyDestination(_AudienceImport):
    endpoint: Literal["audience_import_legacy"] = Field(description=(
        "The legacy audience import (`POST /api/1.0/import/suppression`), authorised by one API key."))
    credentials: ApiKey = Field(description="The account's API key.")


class DataDeletionDestination(DestinationBase):
    # Batch size and rate are not documented. One request in flight keeps the new task identifiable when the
    # 202 carries no task ID (it is found by listing tasks before and after).
    default_limits: ClassVar[Limits] = Limits(batch_size=10_000, requests_per_second=1, concurrency=1)
    max_limits: ClassVar[Limits] = Limits(batch_size=100_000, requests_per_second=10, concurrency=1)
    production_url: ClassVar[str] = "https://api.rokt.com"

    endpoint: Literal["data_deletion"] = Field(description=(
        "The Data Deletion API (`POST /data/deletion-requests/emails`): one deletion task per batch."))
    account_id: str = Field(min_length=1, description="The Rokt account the deletion requests are for.")
    send: Literal["sha256", "email"] = Field(default="sha256", description=(
        "sha256: base64 SHA-256 digests (`sha256Emails`); email: normalised addresses (`rawEmails`)."))
    credentials: AppCredentials = Field(description="The OAuth app id and secret (client credentials).")


class NurtureUnsubscribeDestination(DestinationBase):
    # One email per request; the rate is not documented, so the defaults are conservative.
    default_limits: ClassVar[Limits] = Limits(batch_size=1, requests_per_second=50, concurrency=8)
    max_limits: ClassVar[Limits] = Limits(batch_size=1, requests_per_second=1000, concurrency=32)
    production_url: ClassVar[str] = "https://api.data.rokt.com"

    identifier_roles: ClassVar[tuple[str, ...]] = ("email",)

    endpoint: Literal["nurture_unsubscribe"] = Field(description=(
        "Nurture Unsubscribe (`POST /1.0/nurture/unsubscribe`): one request per email."))
    credentials: ApiKey = Field(description="The webhook API key.")


_PARTNERSHIPS_URL = "https://accounts.rokt.com"
PARTNERSHIPS_AUTH_URL = "https://auth.rokt.com/api/v1/oauth/token"
RequestType = Literal["NETWORK_OPT_OUT", "NETWORK_DATA_DELETION"]


class PartnershipsDestination(DestinationBase):
    """What the two Partnerships families share: the parent account, the credentials and the published limits.

    Published: 10 requests per minute per partner credential, shared by every machine and job using it. The
    credentials are a client id and secret exchanged at `auth_url` for access tokens of a few minutes (refreshed
    before they expire and once on a 401), or a fixed access token for short jobs.
    """

    default_limits: ClassVar[Limits] = Limits(batch_size=1, requests_per_minute=10, concurrency=2)
    max_limits: ClassVar[Limits] = Limits(batch_size=1, requests_per_minute=10, concurrency=4)
    documented_limits: ClassVar[tuple[str, ...]] = ("requests_per_minute", "requests_per_second")
    production_url: ClassVar[str] = _PARTNERSHIPS_URL

    parent_account_id: str = Field(min_length=1, description="Your parent (partner) account id, as a string.")
    credentials: BearerToken | ClientCredentials = Field(description=(
        "A Partnerships API client (client_id and client_secret), or a fixed token."))
    # the OAuth token endpoint; Rokt's when base_url is Rokt's, else required
    auth_url: str | None = Field(default=None, description=(
        f"The OAuth token endpoint. Rokt's (`{PARTNERSHIPS_AUTH_URL}`) when base_url is Rokt's; required with "
        "client_id and client_secret otherwise (a sandbox's is `<base_url>/api/v1/oauth/token`)."))

    @model_validator(mode="before")
    @classmethod
    def _one_kind_of_credentials(cls, data: Any) -> Any:
        credentials = data.get("credentials") if isinstance(data, dict) else None
        if isinstance(credentials, dict) and set(credentials) not in ({"token"}, {"client_id", "client_secret"}):
            raise ValueError("credentials: give client_id and client_secret (exchanged for short-lived tokens), or a "
                             "fixed token")
        return data

    @field_validator("auth_url")
    @classmethod
    def _valid_auth_url(cls, value: str | None) -> str | None:
        return api_url(value, "auth_url")

    @model_validator(mode="after")
    def _auth_url_beside_base_url(self) -> PartnershipsDestination:
        # A sandbox's client secret must never be sent to Rokt's token endpoint, nor Rokt's to a sandbox's.
        if isinstance(self.credentials, ClientCredentials) and self.auth_url is None and not self.is_production:
            raise ValueError("auth_url: required with client_id and client_secret when base_url is not Rokt's "
                             f"(Rokt's is {PARTNERSHIPS_AUTH_URL})")
        return self

    @property
    def token_url(self) -> str:
        return self.auth_url or PARTNERSHIPS_AUTH_URL


class NetworkPrivacyDestination(PartnershipsDestination):
    identifier_roles: ClassVar[tuple[str, ...]] = ("email", "phone", "sha256")
    other_roles: ClassVar[tuple[str, ...]] = ("request_type",)
    one_identifier_per_row: ClassVar[bool] = False

    endpoint: Literal["network_privacy"] = Field(description=(
        "Network privacy requests (Partnerships API): one opt-out or deletion per person."))
    request_type: RequestType | None = Field(default=None, description=(
        "The request for the whole file, unless a request_type column is mapped (then required there)."))
    default_phone_region: str = Field(default="US", pattern=r"^[A-Z]{2}$", description=(
        "The region (two capital letters) of phones written without a country code."))


class AccountDeletionDestination(PartnershipsDestination):
    identifier_roles: ClassVar[tuple[str, ...]] = ("account_id",)

    endpoint: Literal["account_deletion"] = Field(description=(
        "Account deletion (Partnerships API): delete the data of managed accounts, one request per account."))
    dry_run: bool = Field(default=False, description="true sends ?dry_run=true: Rokt validates, nothing is deleted.")
    max_accounts: int = Field(default=10, ge=0, description="A real deletion of more accounts than this needs --yes.")
    operation_poll_seconds: float = Field(default=30.0, ge=0, le=3600, description=(
        "How long to poll an operation after an answer that may hide an action (a 5xx), and to record "
        "accepted requests' operation status."))


Destination = Annotated[
    Union[
        AudienceImportDestination,
        AudienceImportLegacyDestination,
        DataDeletionDestination,
        NurtureUnsubscribeDestination,
        NetworkPrivacyDestination,
        AccountDeletionDestination,
    ],
    Field(discriminator="endpoint"),
]


class OutputConfig(StrictModel):
    """Where the manifest, summaries, rejects and state go."""

    uri: str = Field(default="out/", description=(
        "A folder or an `s3://` prefix; a run writes `<uri>/<job>/<run_id>/`."))
    rejects_include_values: bool = Field(default=False, description=(
        "true writes each rejected value, as read, into rejects.csv."))
    s3: S3Options = Field(default=S3Options(), description="How to reach S3, when `uri` is on S3.")
    server_side_encryption: Literal["AES256", "aws:kms", "aws:kms:dsse"] | None = Field(default=None, description=(
        "S3 server-side encryption for every object the run writes."))
    kms_key_id: str | None = Field(default=None, description="The KMS key for aws:kms encryption.")
    # With S3 output the ledger reaches S3 in segments: after this many answers or seconds, whichever first.
    ledger_flush_records: int = Field(default=50, ge=1, le=100_000, description=(
        "S3 output: the ledger reaches S3 after this many answers or ledger_flush_seconds, whichever comes first."))
    ledger_flush_seconds: float = Field(default=2.0, gt=0, le=300, description=(
        "S3 output: the longest an answer waits before its ledger line is put on S3."))
    # incremental and mirror jobs: state versions kept for `state rollback` (the current one is always kept)
    keep_state_versions: int = Field(default=10, ge=1, le=1000, description=(
        "incremental and mirror: state versions kept for `state rollback` (the current one is always kept)."))


class JobConfig(StrictModel):
    """One job: where the data comes from, where it goes, where the record of it is kept."""

    job: str = Field(pattern=JOB_NAME, description=(
        "The job's name: its output folder and its ledger key. Letters, digits, `.`, `_` and `-`."))
    source: SourceConfig = Field(description="The input files and their columns.")
    destination: Destination = Field(description="The endpoint, its URL, account, credentials and limits.")
    output: OutputConfig = Field(default=OutputConfig(), description="Where the run's records go.")

    @model_validator(mode="after")
    def _columns_fit_destination(self) -> JobConfig:
        destination, mapped = self.destination, self.source.columns.mapped()
        allowed = destination.identifier_roles + destination.other_roles
        for role in mapped:
            if role not in allowed:
                raise ValueError(f"source.columns.{role}: not used by {destination.endpoint} (it takes {', '.join(allowed)})")
        identifiers = [role for role in mapped if role in destination.identifier_roles]
        choices = " or ".join(destination.identifier_roles)
        if not identifiers:
            raise ValueError(f"source.columns: map an identifier column for {destination.endpoint}: {choices}")
        if destination.one_identifier_per_row and len(identifiers) > 1:
            raise ValueError(f"source.columns: map either {choices}, not several (one identifier per row)")
        if getattr(destination, "send", None) == "email" and "email" not in mapped:
            raise ValueError("destination.send: email needs a raw email column; pre-hashed input can only be sent as sha256")
        if isinstance(destination, NetworkPrivacyDestination) and destination.request_type is None and "request_type" not in mapped:
            raise ValueError("destination.request_type: set NETWORK_OPT_OUT or NETWORK_DATA_DELETION, or map a request_type column")
        return self


def is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def interpolate_environment(value: Any, where: str = "", environment: Mapping[str, str] | None = None) -> Any:
    """Replace ${VAR} in every string of the parsed YAML; an unset variable names its key and variable.

    `environment` defaults to os.environ; a scheduler passes its own mapping (secrets from its store)
    so they never enter the process environment or the job file.
    """
    env = os.environ if environment is None else environment
    if isinstance(value, dict):
        return {k: interpolate_environment(v, f"{where}.{k}" if where else str(k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_environment(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return env[name]

        return _ENV_REFERENCE.sub(substitute, value)
    return value


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, naming the key. Input values are left out: they may be secrets."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        location = ".".join(str(part) for part in problem["loc"] if not _is_union_tag(part))
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        elif problem["type"] == "missing" and location.endswith("base_url"):
            message = _BASE_URL_REQUIRED.format(production=_production_url(problem["loc"]))
        elif problem["type"] == "union_tag_invalid":
            expected = problem.get("ctx", {}).get("expected_tags", "")
            message = f"unknown endpoint; expected one of {expected}"
        lines.append(f"{location}: {message}" if location else message)
    return "; ".join(lines)


_BASE_URL_REQUIRED = ("required: the API's URL, {production} for Rokt's, or a sandbox's (http://127.0.0.1:8787). There is "
                      "no default, so that a job always says where its data goes")


def _production_url(location: tuple[Any, ...]) -> str:
    classes = {cls.model_fields["endpoint"].annotation.__args__[0]: cls for cls in Destination.__args__[0].__args__}
    endpoint = next((part for part in location if part in classes), None)
    return classes[endpoint].production_url if endpoint else "https://…rokt.com"


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part.startswith(("audience_import", "data_deletion", "nurture_", "network_privacy", "account_deletion"))


def load_job(
    path: str | os.PathLike[str],
    overrides: dict[str, Any] | None = None,
    environment: Mapping[str, str] | None = None,
) -> JobConfig:
    """Read, interpolate and validate a job file. Raises ConfigError with a one-line message.

    `overrides` sets dotted keys before validation (e.g. {"source.uri": "s3://…"}); `environment` replaces
    os.environ for ${VAR} lookups.
    """
    job_path = Path(path)
    raw = _read_job_file(job_path, overrides)
    try:
        return JobConfig.model_validate(interpolate_environment(raw, environment=environment))
    except ValidationError as exc:
        raise ConfigError(f"{job_path}: {describe_validation_error(exc)}") from None


def _read_job_file(job_path: Path, overrides: dict[str, Any] | None) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(job_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"job file not found: {job_path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{job_path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{job_path}: a job file is a YAML mapping with job, source, destination and output")
    for dotted_key, value in (overrides or {}).items():
        _set_dotted(raw, dotted_key, value)
    return raw


class _OutputsPart(StrictModel):
    """The keys of a job file that say where its outputs are and what its runs sent."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    job: str = Field(pattern=JOB_NAME)
    output: OutputConfig = OutputConfig()


@dataclass(frozen=True)
class JobOutputs:
    """What the commands that only read a job's outputs (status, runs, lookup, audit export) need of its file:
    where the outputs are, and what kind of identifiers the runs sent. Read without credentials: only `job` and
    `output` are interpolated, so they run where the job's secrets are not."""

    job: str
    output: OutputConfig
    endpoint: str
    roles: tuple[str, ...]  # the identifier columns mapped (email, sha256, phone, account_id, ...)
    default_phone_region: str = "US"


def load_job_outputs(path: str | os.PathLike[str], environment: Mapping[str, str] | None = None) -> JobOutputs:
    """The job file's outputs side (JobOutputs); ConfigError with one line when it is unusable."""
    job_path = Path(path)
    raw = _read_job_file(job_path, None)
    destination = raw.get("destination") if isinstance(raw.get("destination"), dict) else {}
    columns = (raw.get("source") or {}).get("columns") if isinstance(raw.get("source"), dict) else None
    known = {cls.model_fields["endpoint"].annotation.__args__[0] for cls in Destination.__args__[0].__args__}
    if destination.get("endpoint") not in known:
        raise ConfigError(f"{job_path}: destination.endpoint: expected one of {', '.join(sorted(known))}")
    try:
        part = _OutputsPart.model_validate(interpolate_environment(
            {key: raw[key] for key in ("job", "output") if key in raw}, environment=environment))
        roles = ColumnMap.model_validate(columns or {}).mapped()
    except ValidationError as exc:
        raise ConfigError(f"{job_path}: {describe_validation_error(exc)}") from None
    return JobOutputs(part.job, part.output, destination["endpoint"], tuple(roles),
                      str(destination.get("default_phone_region", "US")))


def _set_dotted(tree: dict[str, Any], dotted_key: str, value: Any) -> None:
    *parents, leaf = dotted_key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value
