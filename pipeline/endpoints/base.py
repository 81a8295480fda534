"""What an endpoint module declares, the hooks it may override, and the status -> error table they share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pipeline.batching import Batch
from pipeline.config import Limits
from pipeline.errors import TerminalError, TransientError
from pipeline.http.retry import is_slow_down, parse_retry_after
from pipeline.prepare.hashing import WireEncoding
from pipeline.prepare.prepared import RowPlan, single_identifier_plan

if TYPE_CHECKING:  # the HTTP stack is loaded only by runs that send (a dry run needs none of it)
    import requests

# Statuses after which a retry may succeed. 429, and 503 with Retry-After, mean the server did nothing.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Statuses that will fail every other request of the run too.
RUN_STOPPING_STATUSES = frozenset({401, 403})


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    params: dict[str, str] | None = None
    rate: str | None = None  # which of the endpoint's limits it counts against: None, the writes'; else EndpointSpec.rates


@dataclass(frozen=True)
class Recovered:
    """The outcome of a request whose answer was lost, learnt another way (e.g. from the operation it started)."""

    ids: dict[str, Any]
    http_status: int | None
    notes: dict[str, Any]


@dataclass(frozen=True)
class EndpointSpec:
    """Static facts of an endpoint family."""

    family: str
    retry_safe: bool  # idempotent: a retry cannot do harm (every retry backs off; a lost answer is flagged either way)
    wire_encoding: WireEncoding
    identifier_role: str
    limits: Limits
    one_subject: bool = False  # one identifier per request: the manifest keys it by `subject`
    needs_whole_set: bool = False  # read the whole source before the first request (e.g. a count that needs --yes)
    status_hints: dict[int, str] = field(default_factory=dict)
    rates: dict[str, Limits] = field(default_factory=dict)  # limits of other requests than the writes (e.g. polls)
    # How long the API keeps an Idempotency-Key (None: no key). A request sent without its answer being recorded
    # is then recorded as sending, so a resume knows whether the key still protects it.
    idempotency_key_hours: float | None = None


Fetch = Callable[[HttpRequest], "requests.Response"]


class EndpointBase:
    """Defaults for the optional hooks; an endpoint module overrides what its API needs."""

    spec: EndpointSpec
    target: str = ""  # the destination's target() digest, set by endpoint_for
    one_subject: ClassVar[bool] = False  # one identifier per request: the manifest keys it by `subject`

    def auth_headers(self) -> dict[str, str]:
        """Headers that may change between attempts (a refreshed OAuth token). Called per attempt."""
        return {}

    def refresh_credentials(self) -> bool:
        """Drop cached credentials after CredentialsExpired; True when a retry may now succeed."""
        return False

    def row_plan(self, columns: dict[str, str]) -> RowPlan:
        """How valid rows become requests; the default is one identifier column per row."""
        spec = self.spec
        return single_identifier_plan(spec.identifier_role, spec.wire_encoding, with_subject=spec.one_subject)

    def manifest_fields(self, batch: Batch) -> dict[str, Any]:
        """Extra audit fields for a manifest line. Never a raw identifier."""
        return {}

    def same_target(self, record: dict[str, Any]) -> bool:
        """Whether a manifest line is about a request to where this run sends (a run id reused after the list,
        action, account or URL changed starts afresh). A line written before lines carried a target is."""
        return record.get("target", self.target) == self.target

    def counts_for_resume(self, record: dict[str, Any]) -> bool:
        """Whether an accepted manifest line means this run need not send that request again."""
        return self.same_target(record)

    def resume_key(self, batch: Batch) -> str:
        """One-subject endpoints: what a resumed run looks up to skip a request already accepted."""
        assert batch.subject is not None
        return batch.subject

    @staticmethod
    def resume_keys_covered(record: dict[str, Any]) -> tuple[str, ...]:
        """One-subject endpoints: the resume keys of the requests an accepted manifest line makes unnecessary,
        the line's own first (from the line alone: `status` and `lookup` read it without a job's credentials)."""
        return (record["subject"],)

    def bind_run(self, job: str, run_id: str, dry_run: bool) -> None:
        """Called once per run before any request is built (e.g. to derive idempotency keys)."""

    def confirmation_needed(self, requests: int) -> str | None:
        """A reason to ask for --yes before sending `requests` requests, or None."""
        return None

    def on_run_start(self, fetch: Fetch) -> None:
        """Called once before the first request of a run."""

    def build_request(self, batch: Batch) -> HttpRequest:
        raise NotImplementedError

    def check_status(self, response: requests.Response) -> None:
        """Raise the typed error for a non-2xx answer (used for reads too)."""
        raise_for_status(response, self.spec)

    def read_response(self, response: requests.Response) -> dict[str, Any]:
        """The IDs the API returned (body and headers); raises TransientError or TerminalError."""
        raise NotImplementedError

    def ids_of_unrecorded_attempts(self, since: str, records: list[dict[str, Any]], fetch: Fetch) -> dict[str, Any]:
        """IDs the API may hold for requests sent since `since` (under this run id) whose answers were never
        recorded: the process died between sending and recording. Called once, before a resume sends."""
        return {}

    def after_accept(self, batch: Batch, ids: dict[str, Any], fetch: Fetch) -> tuple[dict[str, Any], dict[str, Any]]:
        """(ids, notes for the manifest) once a request is accepted: e.g. look up an ID the answer lacked."""
        return ids, {}

    def recover(self, response: requests.Response, fetch: Fetch) -> Recovered | None:
        """An error answer after which the API may have acted (a 5xx): its real outcome, when the API can tell
        (raise TerminalError for a request it refused); None to retry as usual."""
        return None


Endpoint = EndpointBase


def raise_for_status(response: requests.Response, spec: EndpointSpec) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = error_detail(response)
    hint = spec.status_hints.get(status, "")
    message = f"HTTP {status} from {spec.family}" + (f" ({detail})" if detail else "") + (f": {hint}" if hint else "")
    if status in TRANSIENT_STATUSES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        not_acted = is_slow_down(status, retry_after)
        raise TransientError(message, http_status=status, retry_after=retry_after, may_have_arrived=not not_acted,
                             throttled=not_acted)
    raise TerminalError(message, http_status=status, stops_run=status in RUN_STOPPING_STATUSES)


REQUEST_ID_HEADER = "X-Request-Id"


def request_id_of(response: requests.Response) -> str | None:
    """The id the API gave this answer (what its support asks for): the X-Request-Id header, or the envelope's
    `request_id` (Partnerships answers, errors included)."""
    header = response.headers.get(REQUEST_ID_HEADER)
    if header:
        return header
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    body = json_body(response)
    value = body.get("request_id") if isinstance(body, dict) else None
    return value if isinstance(value, str) and _REQUEST_ID.match(value) else None


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # an id, never free text that could echo the input


ERROR_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")  # UNAUTHORIZED_ACCOUNT: a name, never free text


def error_detail(response: requests.Response) -> str:
    """The error body's code name (UNAUTHORIZED_ACCOUNT), and nothing else: free text may echo the input."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        error = body.get("error")
        name = error.get("error") if isinstance(error, dict) else error
        if isinstance(name, str) and ERROR_CODE.match(name):
            return name
    return ""


def json_body(response: requests.Response) -> Any:
    """The parsed body, or None when it is empty or not JSON."""
    try:
        return response.json()
    except ValueError:
        return None
