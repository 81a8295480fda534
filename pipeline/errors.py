"""The error taxonomy. Each error's message is safe to log: it never carries a raw identifier or a secret."""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""

    exit_code = 1


class ConfigError(PipelineError):
    """The job file is wrong: nothing was sent."""

    exit_code = 2


class InputError(PipelineError):
    """The input cannot be used (missing file or column, too many invalid rows): nothing was sent."""

    exit_code = 2


def source_changed(what: str) -> InputError:
    """A source that read differently from one pass to the next (it is read more than once, so it must not change).
    `what` says how, in counts and file names only."""
    return InputError(f"source: {what}: was it rewritten during the run? Rerun on a finished export")


class LedgerError(PipelineError):
    """Answers could not be recorded durably (the object store kept failing): a resume would send them again."""

    exit_code = 1


class SendError(PipelineError):
    """A request did not succeed."""

    def __init__(self, message: str, *, http_status: int | None = None, request_id: str | None = None):
        super().__init__(message)
        self.http_status = http_status
        self.request_id = request_id


class TransientError(SendError):
    """Worth retrying: the server was busy, failed, or the network dropped.

    `retry_after` is the server's requested wait in seconds, when it gave one.
    `may_have_arrived` is False only when the request surely never reached the server (connect error)
    or the server said it did nothing (429, 503 with Retry-After).
    `throttled` means the server said "slow down" (429, 503 with Retry-After), not "this request is bad": it is
    retried for as long as retry.max_throttle_seconds allows, without using up retry.max_attempts.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        may_have_arrived: bool = True,
        request_id: str | None = None,
        throttled: bool = False,
    ):
        super().__init__(message, http_status=http_status, request_id=request_id)
        self.retry_after = retry_after
        self.may_have_arrived = may_have_arrived
        self.throttled = throttled


class CredentialsExpired(TransientError):
    """The API refused a credential that may only have expired (an OAuth token): refresh once and retry."""

    def __init__(self, message: str, *, http_status: int | None = None):
        super().__init__(message, http_status=http_status, may_have_arrived=False)


class TerminalError(SendError):
    """Retrying will not help: the request is wrong or not allowed.

    `stops_run` marks errors that will fail every other request too (bad credentials, account not
    allow-listed), so the runner stops instead of burning through the file.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        stops_run: bool = False,
        request_id: str | None = None,
    ):
        super().__init__(message, http_status=http_status, request_id=request_id)
        self.stops_run = stops_run
