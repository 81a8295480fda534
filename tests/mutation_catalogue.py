"""Deliberate breakages of guarantee-critical code, each with the tests the Guarantees table names for it.

`make mutants` (scripts/mutants.py) applies them one at a time in a copy of the project and runs those tests:
each must fail. A mutant that survives is a guarantee no test can see break. tests/unit/test_mutation_catalogue.py
keeps the list honest: every edit's text is in its file exactly once, and every test it names exists and is
named in the Guarantees table (docs/guarantees.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    path: str
    before: str  # found exactly once in the file
    after: str


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str  # the broken promise, in words
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]  # pytest node ids; the mutant is killed when any of them fails


def mutant(name: str, what: str, path: str, before: str, after: str, *tests: str) -> Mutant:
    return Mutant(name, what, (Edit(path, before, after),), tests)


CLIENT = "pipeline/http/client.py"
BASE = "pipeline/endpoints/base.py"
FAULTS = "tests/integration/test_fault_matrix.py"
LOST = f"{FAULTS}::test_every_lost_answer_is_flagged_ambiguous_and_nothing_else_is"
STOP_403 = f"{FAULTS}::test_a_403_stops_the_run_at_its_first_answer"
PARTNERSHIPS = "tests/integration/test_partnerships.py"
PRESSURE = "tests/integration/test_under_pressure.py"
REGISTER_TESTS = "tests/integration/test_register.py"
LIMITS = "pipeline/http/limits.py"
SHORT_TOKENS = "test_short_lived_tokens_are_exchanged_as_they_expire_and_the_published_limits_hold"

_READ_TIMEOUT = 'return TransientError(f"no answer within the timeout ({name})", may_have_arrived=True)'
_STOPPING = "RUN_STOPPING_STATUSES = frozenset({401, 403})"

MUTANTS: list[Mutant] = [
    # M1: a read timeout no longer counts as "may have arrived"; run once per family, each family's case must see it.
    *(mutant(f"M1[{family}]", f"an answer lost to a read timeout is not flagged ambiguous ({family})", CLIENT,
             _READ_TIMEOUT, _READ_TIMEOUT.replace("=True", "=False"), f"{LOST}[{family}]")
      for family in ("audience", "deletion", "unsubscribe", "privacy", "accounts")),
    mutant("M1b", "an answer lost to a reset after sending is not flagged ambiguous", CLIENT,
           'return TransientError(f"connection lost before the answer ({name})", may_have_arrived=True)',
           'return TransientError(f"connection lost before the answer ({name})", may_have_arrived=False)', LOST),
    Mutant("M2c", "one request more in flight than the concurrency limit", (
        Edit("pipeline/http/limits.py", "self._slots = threading.BoundedSemaphore(limits.concurrency)",
             "self._slots = threading.BoundedSemaphore(limits.concurrency + 1)"),
        Edit("pipeline/send/dispatch.py", "ThreadPoolExecutor(max_workers=self.concurrency,",
             "ThreadPoolExecutor(max_workers=self.concurrency + 1,"),
    ), ("tests/integration/test_audience_run.py::test_concurrency_is_used_to_the_limit_and_never_beyond",)),
    mutant("M8", "plain http allowed to hosts that only look like loopback", "pipeline/config.py",
           'if hostname == "localhost":', 'if hostname.startswith(("localhost", "127.")):',
           "tests/unit/test_config.py::test_plain_http_is_refused_for_hosts_that_only_look_like_loopback"),
    # M10: 403 no longer stops the run; confined to nothing, so each family's case must see it.
    *(mutant(f"M10[{family}]", f"a 403 does not stop the run ({family})", BASE, _STOPPING,
             "RUN_STOPPING_STATUSES = frozenset({401})", f"{STOP_403}[{family}]")
      for family in ("audience", "unsubscribe", "privacy")),
    mutant("M11", "the whole error body (which may echo the input) is copied into messages and the manifest", BASE,
           '    """The error body\'s code name (UNAUTHORIZED_ACCOUNT), and nothing else: free text may echo the input."""\n',
           "    return response.text\n",
           "tests/integration/test_no_secrets_or_pii.py::test_no_secret_or_raw_identifier_anywhere"),
    mutant("M12", "a resumed account deletion sends a new Idempotency-Key", "pipeline/endpoints/account_deletion.py",
           'return str(uuid.uuid5(_KEY_NAMESPACE, f"{self._run_scope}/{account_id}/{mode}"))',
           "return str(uuid.uuid4())",
           "tests/integration/test_crash_resume.py::"
           "test_account_deletion_killed_between_an_answer_and_its_record_deletes_each_account_once"),
    # Retries and limits.
    mutant("R1", "a Retry-After shorter than the backoff is not waited for", "pipeline/http/retry.py",
           "return retry_after + self.rng.uniform(0, min(1.0, self.base_delay))", "return jittered",
           "tests/unit/test_retry_and_limits.py::test_retry_after_is_a_floor_and_a_longer_wish_is_not_cut_short"),
    mutant("R2", "a Retry-After holds only the request it answered, not the run's other starts", CLIENT,
           "                gate.hold(error.retry_after)", "                pass",
           "tests/integration/test_audience_run.py::test_a_retry_after_holds_every_start_of_the_run"),
    mutant("R3", "one start more per window than the rate limit", "pipeline/http/limits.py",
           "    return capacity, max(period, capacity * period / rate)",
           "    return capacity + 1, max(period, capacity * period / rate)",
           "tests/integration/test_audience_run.py::test_limits_are_never_exceeded"),
    mutant("R4", "one attempt more than retry.max_attempts", "pipeline/http/retry.py",
           "return attempt < self.max_attempts", "return attempt <= self.max_attempts",
           "tests/unit/test_retry_and_limits.py::test_attempts_are_bounded"),
    mutant("R5", "a Retry-After longer than allowed is retried early instead of stopping the run", CLIENT,
           "if not self.policy.honours(error.retry_after):", "if False:",
           "tests/integration/test_audience_run.py::test_a_retry_after_longer_than_allowed_stops_the_run"),
    mutant("R6", "an expired OAuth token is not refreshed", CLIENT,
           "if not refreshed and self.endpoint.refresh_credentials():", "if False:",
           "tests/integration/test_data_deletion.py::test_expired_token_is_refreshed_once"),
    mutant("R7", "a 429 is flagged as if the server might have acted on it", BASE,
           "not_acted = is_slow_down(status, retry_after)", "not_acted = False", LOST),
    mutant("R8", "503 is no longer retried", BASE, "TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})",
           "TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 504})",
           f"{FAULTS}::test_every_fault_for_every_family"),
    # Sending under pressure.
    mutant("T1", "a 429 uses up the request's retry.max_attempts", CLIENT, "        if error.throttled:\n",
           "        if False:\n", f"{PRESSURE}::test_throttling_never_fails_a_run"),
    mutant("T2", "the run never slows its rate when throttled", LIMITS,
           "self.pace = max(self.FLOOR, self.pace * self.DECREASE)", "self.pace = self.pace",
           f"{PRESSURE}::test_throttling_never_fails_a_run",
           "tests/unit/test_retry_and_limits.py::test_throttling_slows_the_rate_down_and_successes_bring_it_back"),
    mutant("T3", "a window's worth of starts is released at once", LIMITS,
           "self._next_start = now + self.spacing / self.pace", "self._next_start = now",
           "tests/unit/test_retry_and_limits.py::test_starts_are_spaced_evenly_not_released_a_window_at_a_time"),
    mutant("T4", "a request that leaves late keeps its early start", LIMITS,
           "if start in self._starts and now > start:", "if False:",
           "tests/unit/test_retry_and_limits.py::test_a_request_that_leaves_late_moves_its_start_and_the_spacing_after_it"),
    mutant("T5", "a run throttled forever never stops", CLIENT,
           "if outcome.throttled_for + delay <= self.policy.max_throttle:", "if True:",
           f"{PRESSURE}::test_a_run_refused_for_longer_than_its_throttle_budget_stops_cleanly"),
    # Exactly once per export, across runs.
    mutant("G1", "the delivery register is not consulted", "pipeline/runner.py",
           "earlier = register.earlier() if register is not None and not force else None", "earlier = None",
           f"{REGISTER_TESTS}::test_the_same_export_goes_once_whatever_the_run_id_and_again_only_with_force"),
    mutant("G2", "a partly delivered export starts over instead of resuming its run", "pipeline/runner.py",
           "            run_id = earlier.run_id\n", "            pass\n",
           f"{REGISTER_TESTS}::test_an_export_delivered_in_part_is_finished_by_resuming_that_run"),
    mutant("G3", "a run is registered only once it ends (a killed run is forgotten)", "pipeline/runner.py",
           "            register.sending(run_id, summary.destination)\n", "            pass\n",
           f"{REGISTER_TESTS}::test_an_export_delivered_in_part_is_finished_by_resuming_that_run"),
    mutant("G4", "a job without base_url goes to production", "pipeline/config.py",
           "    base_url: str = Field(description=(\n",
           '    base_url: str = Field(default="https://data.rokt.com", description=(\n',
           f"{REGISTER_TESTS}::test_a_job_without_base_url_is_refused_and_validate_names_the_destination"),
    mutant("G5", "a deletion sync right after a run ignores that run's last requests", "pipeline/deletions.py",
           "    sender.gates[None].seed(list(recent_starts))\n", "    pass\n",
           "tests/integration/test_data_deletion.py::test_the_sync_of_several_open_runs_takes_one_token_and_one_listing"),
    mutant("G6", "a local output under a remote executor is not refused", "dags/rokt_airflow/tasks.py",
           'if remote and not job.output.uri.startswith("s3://") and not settings.get("output_is_shared"):', "if False:",
           "tests/dags/test_dag_runs.py::test_a_local_output_under_a_remote_executor_is_refused_before_sending"),
    # The audit trail.
    mutant("A1", "lookup does not read a batch run's delivery index", "pipeline/audit/lookup.py",
           "batches = set(_indexed_batches(store, subject.digest))", "batches = set()",
           "tests/integration/test_audit.py::test_lookup_finds_an_address_in_its_batch_and_says_not_found_otherwise"),
    mutant("A2", "a resume overwrites the first attempt's summary", "pipeline/runner.py",
           "summary.attempt = len(store.list(SUMMARIES)) + 1", "summary.attempt = 1",
           "tests/integration/test_audit.py::test_a_resumed_run_keeps_every_attempts_summary"),
    # The ledger.
    mutant("L1", "a resume skips requests the API rejected as if accepted", "pipeline/ledger.py",
           'r.get("status") == "accepted" and "batch" in r', 'r.get("status") in ("accepted", "rejected") and "batch" in r',
           "tests/integration/test_unsubscribe.py::test_resume_never_resends_an_accepted_subject"),
    mutant("L2", "manifest lines are buffered, not flushed and fsynced per answer", "pipeline/ledger.py",
           "            self._handle.flush()\n            os.fsync(self._handle.fileno())\n", "",
           "tests/integration/test_crash_resume.py::test_audience_run_killed_and_resumed"),
    mutant("L3", "a torn last manifest line is fatal", "pipeline/ledger.py",
           "        except ValueError:\n            torn += 1\n            continue", "        except ValueError:\n            raise",
           "tests/integration/test_crash_resume.py::test_torn_last_line_is_ignored_and_reported"),
    mutant("L4", "the S3 ledger reaches S3 only at the end of the run", "pipeline/ledger.py",
           "            if len(self._pending) >= self._flush_records:", "            if False:",
           "tests/integration/test_s3.py::test_resume_from_the_s3_ledger_after_the_worker_is_lost"),
    # What the endpoints keep.
    mutant("E1", "the unsubscribe id Rokt returns is not kept", "pipeline/endpoints/nurture_unsubscribe.py",
           'return {"id": body["id"]}', "return {}",
           "tests/integration/test_unsubscribe.py::test_messy_file_delivered_once_one_email_per_request"),
    mutant("E2", "the network privacy requestId is not kept", "pipeline/endpoints/network_privacy.py",
           'ids["requestId"] = body["requestId"]', "pass",
           "tests/integration/test_partnerships.py::test_identifier_rules_phones_and_supersede"),
    mutant("E3", "a real account deletion reuses the Idempotency-Key its dry run burned",
           "pipeline/endpoints/account_deletion.py",
           'mode = "dry-run" if self.destination.dry_run else "real"', 'mode = "real"',
           "tests/integration/test_partnerships.py::test_dry_run_then_real_run_use_distinct_keys_and_a_rerun_deletes_nothing_more"),
    mutant("E4", "a task id in the deletion answer is ignored", "pipeline/endpoints/data_deletion.py",
           'return {"taskId": task_id} if task_id else {}', "return {}",
           "tests/integration/test_data_deletion.py::test_delivered_once_as_base64_with_task_ids"),
    # Configuration: secrets and destinations.
    mutant("C1", "a partner token shows in the config's repr", "pipeline/config.py",
           "class BearerToken(StrictModel):\n    token: SecretStr", "class BearerToken(StrictModel):\n    token: str",
           "tests/integration/test_no_secrets_or_pii.py::test_no_secret_or_raw_identifier_anywhere"),
    mutant("C2", "an unset ${VAR} becomes an empty string", "pipeline/config.py",
           "            if name not in env:\n", "            if False:\n",
           "tests/integration/test_audience_run.py::test_config_and_input_errors_exit_2_and_send_nothing"),
    mutant("C3", "a resume keeps what was accepted for another list", "pipeline/config.py",
           '    "credentials", "auth_url", "limits",', '    "credentials", "auth_url", "limits", "list",',
           "tests/integration/test_audience_run.py::test_a_run_id_reused_for_another_destination_sends_everything_there"),
    # The Partnerships API as published.
    mutant("P1", "an access token is used until it has expired", "pipeline/http/auth.py",
           "self._refresh_at = asked_at + max(lifetime - self._margin, lifetime / 2)",
           "self._refresh_at = asked_at + lifetime * 2", f"{PARTNERSHIPS}::{SHORT_TOKENS}"),
    mutant("P2", "a per-minute limit is kept per second", "pipeline/http/limits.py",
           "period, rate = minute_seconds(), limits.requests_per_minute", "period, rate = 1.0, limits.requests_per_minute",
           f"{PARTNERSHIPS}::{SHORT_TOKENS}"),
    mutant("P3", "--max-duration does not stop the run", "pipeline/send/run.py",
           "threading.Timer(max(deadline - time.monotonic(), 0.0),", "threading.Timer(max(deadline - time.monotonic(), 0.0) + 3600,",
           f"{PARTNERSHIPS}::test_max_duration_stops_cleanly_and_the_same_run_id_finishes"),
    mutant("P4", "an error answer's request id is not kept", CLIENT,
           'ids = {"request_id": request_id} if (request_id := _request_id(outcome.response)) else {}', "ids = {}",
           f"{PARTNERSHIPS}::test_request_ids_are_kept_on_success_and_on_error"),
    mutant("P5", "a lost account-deletion answer is retried blindly instead of read from its operation", CLIENT,
           "if recover and response is not None and error.may_have_arrived and self._recovered(response, outcome):",
           "if False:", f"{PARTNERSHIPS}::test_an_account_deletion_whose_answer_is_lost_is_recovered_from_its_operation"),
    mutant("P6", "a day-old request is trusted to its expired Idempotency-Key", "pipeline/send/resume.py",
           "if age_hours < key_hours - KEY_SAFETY_HOURS:", "if True:",
           f"{PARTNERSHIPS}::test_a_resume_after_the_idempotency_key_may_have_expired_says_so"),
    mutant("P7", "a 401 with exchanged tokens stops the run without trying a fresh token", "pipeline/endpoints/partnerships.py",
           "if response.status_code == 401 and self.oauth is not None:", "if False:",
           f"{PARTNERSHIPS}::test_a_refused_token_is_exchanged_once_more_then_the_run_stops"),
    # Normalisation and hashing.
    mutant("N1", "format characters (direction marks, soft hyphens) stay inside the hash", "pipeline/prepare/normalise.py",
           r'INVISIBLE = r"[\s\p{Cf}\p{Variation_Selector}]+"', r'INVISIBLE = r"[\s]+"',
           "tests/unit/test_hashing.py::test_removed_characters_are_white_space_format_characters_and_variation_selectors"),
    mutant("N2", "emails are not lowercased before hashing", "pipeline/prepare/normalise.py",
           "return _remove_invisible(column).str.to_lowercase()", "return _remove_invisible(column)",
           "tests/integration/test_audience_run.py::test_documented_vector_goes_out_as_hex"),
    mutant("N3", "hex is sent where base64 is expected", "pipeline/prepare/hashing.py",
           'return expr.str.decode("hex", strict=False).bin.encode("base64")', "return expr",
           "tests/integration/test_data_deletion.py::test_the_two_encodings_never_cross_endpoints"),
    mutant("N4", "a base64 pre-hashed value is passed through as if it were hex", "pipeline/prepare/hashing.py",
           ".otherwise(base64_to_hex(expr))", ".otherwise(expr)",
           "tests/integration/test_audience_run.py::test_prehashed_input_in_both_encodings"),
    mutant("N5", "a domain without a dot passes as an address", "pipeline/prepare/email_grammar.py",
           r'EMAIL_ADDRESS = rf"^{_LOCAL_PART}@(?:{_LABEL}\.)+{_TOP_LEVEL_DOMAIN}$"',
           r'EMAIL_ADDRESS = rf"^{_LOCAL_PART}@(?:{_LABEL}\.)*{_TOP_LEVEL_DOMAIN}$"',
           "tests/integration/test_accounting_property.py::test_every_row_is_accounted_for"),
    # Data you can trust.
    mutant("V1", "an address found inside junk (a display name, mailto:, punctuation) is hashed and sent",
           "pipeline/prepare/email_grammar.py",
           r'EMAIL_ADDRESS = rf"^{_LOCAL_PART}@(?:{_LABEL}\.)+{_TOP_LEVEL_DOMAIN}$"',
           r'EMAIL_ADDRESS = rf"{_LOCAL_PART}@(?:{_LABEL}\.)+{_TOP_LEVEL_DOMAIN}"',
           "tests/integration/test_hostile_inputs.py::test_junk_around_an_address_is_rejected_with_its_reason_never_hashed_and_sent",
           "tests/integration/test_accounting_property.py::test_any_string_is_rejected_with_a_reason_or_sent_as_the_hash_of_a_valid_normalised_address"),
    mutant("V2", "rejects.csv writes a formula a spreadsheet would run", "pipeline/rejects.py",
           """return pl.when(text.str.contains(_FORMULA_START)).then(pl.lit("'") + text).otherwise(text)""", "return text",
           "tests/integration/test_hostile_inputs.py::test_rejects_csv_neutralises_formulas_and_keeps_the_raw_value"),
    mutant("V3", "rejects.csv writes the normalised value, not the one in the source", "pipeline/rejects.py",
           "then(pl.col(raw_value_column(role)))", "then(pl.col(role))",
           "tests/integration/test_hostile_inputs.py::test_rejects_csv_neutralises_formulas_and_keeps_the_raw_value"),
]
