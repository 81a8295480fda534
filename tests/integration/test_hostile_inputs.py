"""Hostile inputs: each ends in a clear one-line error (exit 2) or quarantined rows, never a traceback."""

from __future__ import annotations

import gzip

import polars as pl
import pytest

from tests.conftest import audience_job, deletion_job, read_summary, run_cli, unsubscribe_job, write_job


def run(tmp_path, source, env, columns=None, **source_options):
    job = audience_job(tmp_path, source, columns=columns or {"email": "email"})
    job["source"].update(source_options)
    return run_cli("run", str(write_job(tmp_path, job)), env=env)


def assert_one_line_error(done, text):
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and text in lines[0], done.stderr


def _half_a_gzip() -> bytes:
    import random

    rng = random.Random(5)
    rows = "".join(f"{rng.getrandbits(64):016x}@example.com\n" for _ in range(20_000))
    blob = gzip.compress(("email\n" + rows).encode())
    return blob[: len(blob) // 2]  # cut mid-stream, as an interrupted upload leaves it


def write_bytes(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


ERRORS = {
    "missing-file": (lambda p: p / "nope.csv", "no such file or directory"),
    "empty-file": (lambda p: write_bytes(p, "empty.csv", b""), "is empty (0 bytes)"),
    "header-only": (lambda p: write_bytes(p, "header.csv", b"email\n"), "has no data rows"),
    "missing-column": (lambda p: write_bytes(p, "other.csv", b"mail\na@b.co\n"), "column 'email' not found"),
    "wrong-delimiter": (lambda p: write_bytes(p, "semi.csv", b"email;country\na@b.co;US\n"), "is the delimiter right?"),
    "non-utf8": (lambda p: write_bytes(p, "latin1.csv", "email\nren\u00e9@example.com\n".encode("latin-1")), "not valid UTF-8"),
    "truncated-gzip": (lambda p: write_bytes(p, "cut.csv.gz", _half_a_gzip()), "truncated or corrupt"),
    "parquet-nested-type": (
        lambda p: (pl.DataFrame({"email": [["a@b.co"], ["c@d.co"]]}).write_parquet(p / "nested.parquet"), p / "nested.parquet")[1],
        "has type List(String), expected text",
    ),
    "not-a-parquet-file": (lambda p: write_bytes(p, "fake.parquet", b"email\na@b.co\n"), "cannot read"),
}


@pytest.mark.parametrize("case", list(ERRORS), ids=list(ERRORS))
def test_unusable_input_is_one_clear_error(tmp_path, sandbox, sandbox_env, case) -> None:
    make, message = ERRORS[case]
    assert_one_line_error(run(tmp_path, make(tmp_path), sandbox_env), message)
    assert sandbox.state()["attempts"] == []


def test_parquet_with_numbers_instead_of_emails_stops_before_sending(tmp_path, sandbox, sandbox_env) -> None:
    path = tmp_path / "ints.parquet"
    pl.DataFrame({"email": list(range(100))}).write_parquet(path)
    assert_one_line_error(run(tmp_path, path, sandbox_env), "100 of 100 rows (100.0%) are invalid")


def test_quirky_but_usable_rows_are_sent_or_quarantined(tmp_path, sandbox, sandbox_env) -> None:
    good = [f"user{i}@example.com" for i in range(200)]
    csv = "\ufeffemail,note\n" + "".join(f"{e},x\n" for e in good)  # a BOM before the header
    csv += '"quoted\nnew@example.com",a quoted newline inside the cell\n'
    csv += "Inner Space @Example.com,spaces inside\n"
    csv += "\u00fcser@ex\u00e4mple.com,unicode\n"
    csv += "nul\x00byte@example.com,a null byte\n"
    csv += ("x" * 5000) + "@example.com,a very long cell\n"
    path = write_bytes(tmp_path, "quirky.csv", csv.encode("utf-8"))
    done = run(tmp_path, path, sandbox_env)
    assert done.returncode == 0, done.stderr
    facts = read_summary(tmp_path / "out")
    assert facts["rows_read"] == 205 and facts["identifiers_accepted"] == 203
    assert facts["reject_reasons"] == {"email contains control characters": 1, "email longer than 254 bytes": 1}
    import hashlib

    sent = {h for r in sandbox.state()["received"] for h in r["identifiers"]}
    for email in ("quotednew@example.com", "innerspace@example.com", "\u00fcser@ex\u00e4mple.com"):
        assert hashlib.sha256(email.encode()).hexdigest() in sent
    rejects = next((tmp_path / "out").glob("*/*/rejects.csv")).read_text().splitlines()
    assert [line.split(",")[1] for line in rejects[1:]] == ["204", "205"]  # data rows, header and quoted newline aside


def test_a_thousand_columns(tmp_path, sandbox, sandbox_env) -> None:
    frame = pl.DataFrame({f"c{i}": ["v"] * 50 for i in range(999)}).with_columns(email=pl.Series([f"u{i}@example.com" for i in range(50)]))
    frame.write_csv(tmp_path / "wide.csv")
    done = run(tmp_path, tmp_path / "wide.csv", sandbox_env)
    assert done.returncode == 0, done.stderr
    assert read_summary(tmp_path / "out")["identifiers_accepted"] == 50


def test_mixed_hex_and_base64_in_one_column(tmp_path, sandbox, sandbox_env) -> None:
    import base64
    import hashlib

    digests = [hashlib.sha256(f"m{i}@example.com".encode()).digest() for i in range(20)]
    values = [d.hex().upper() if i % 3 == 0 else d.hex() if i % 3 == 1 else base64.b64encode(d).decode() for i, d in enumerate(digests)]
    pl.DataFrame({"h": values}).write_csv(tmp_path / "mixed.csv")
    done = run(tmp_path, tmp_path / "mixed.csv", sandbox_env, columns={"sha256": "h"})
    assert done.returncode == 0, done.stderr
    assert sorted(h for r in sandbox.state()["received"] for h in r["identifiers"]) == sorted(d.hex() for d in digests)


def test_reject_threshold_is_judged_on_the_whole_file_before_sending(tmp_path, sandbox, sandbox_env) -> None:
    good = [f"user{i}@example.com" for i in range(600)]
    # NULLs first, as an ORDER BY export puts them: 3% overall (under 5%), but the first rows are all bad (beside an id,
    # so that they are rows: a line with nothing on it is a blank line, skipped)
    emails = pl.Series("email", [None] * 18 + good, dtype=pl.String)
    pl.DataFrame({"id": range(len(emails)), "email": emails}).write_csv(tmp_path / "nulls-first.csv")
    first = run(tmp_path, tmp_path / "nulls-first.csv", sandbox_env)
    assert first.returncode == 0, first.stderr
    sandbox.reset()
    # 10% invalid, all at the end: nothing may be sent
    pl.DataFrame({"email": good + ["bad"] * 70}).write_csv(tmp_path / "bad-last.csv")
    last = run(tmp_path, tmp_path / "bad-last.csv", sandbox_env)
    assert_one_line_error(last, "70 of 670 rows (10.4%) are invalid")
    assert sandbox.state()["attempts"] == []
    validate = run_cli("validate", str(tmp_path / "job.yaml"), "--json", env=sandbox_env)
    assert validate.returncode == 2 and '"email has no @": 70' in validate.stdout


# Issue 25: what a new user's messy files showed. Each test below failed on the code before it.

GOOD = [f"good{i}@example.com" for i in range(40)]
JUNK_REASONS = {
    "Alice <alice.j@example.com>": "email has a display name or angle brackets (Name <address>)",
    "mailto:mail.to@example.com": "email starts with mailto:",
    "'quoted.s@example.com'": "email is in quotes or has a quotation mark",
    '"dq@example.com"': "email is in quotes or has a quotation mark",
    "semi.colon@example.com;": "email starts or ends with punctuation",
    "trail@example.com>": "email starts or ends with punctuation",
    "paren@example.com)": "email starts or ends with punctuation",
    "two@at@example.com": "email has more than one @",
    "@example.com": "email has nothing before the @",
    "nothing.after@": "email has nothing after the @",
    "nodot@localhost": "email domain has no dot",
    "empty.label@example..com": "email has an empty part (two dots in a row, or a dot first or last)",
    "dot.before.at.@example.com": "email has an empty part (two dots in a row, or a dot first or last)",
    "reserved@example.test": "email domain is reserved (.arpa, .invalid, .local, .localhost, .onion, .test): no mail reaches it",
    "hyphen@-example.com": "not a valid email address",
}


def sha256_hex(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def rejects_rows(out) -> list[dict[str, str]]:
    import csv

    with next(out.glob("*/*/rejects.csv")).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_junk_around_an_address_is_rejected_with_its_reason_never_hashed_and_sent(tmp_path, sandbox, sandbox_env) -> None:
    junk = list(JUNK_REASONS)
    pl.DataFrame({"email": GOOD + junk}).write_csv(tmp_path / "messy.csv")
    done = run(tmp_path, tmp_path / "messy.csv", sandbox_env, max_reject_fraction=0.5)
    assert done.returncode == 0, done.stderr
    sent = {h for r in sandbox.state()["received"] for h in r["identifiers"]}
    assert sent == {sha256_hex(e) for e in GOOD}
    reasons = {int(row["row"]): row["reason"] for row in rejects_rows(tmp_path / "out")}
    assert reasons == {len(GOOD) + 1 + i: JUNK_REASONS[value] for i, value in enumerate(junk)}


RAW_EMAIL_JOBS = {
    "audience-send-email": lambda p, s: audience_job(p, s, columns={"email": "email"}, send="email"),
    "unsubscribe": unsubscribe_job,
    "deletion-raw-emails": lambda p, s: deletion_job(p, s, send="email"),
}


@pytest.mark.parametrize("endpoint", list(RAW_EMAIL_JOBS), ids=list(RAW_EMAIL_JOBS))
def test_raw_email_endpoints_never_send_a_display_name_or_mailto_as_an_address(tmp_path, sandbox, sandbox_env, endpoint) -> None:
    good = GOOD[:12]
    pl.DataFrame({"email": good + ["Eve <eve@example.com>", "mailto:Mallory@Example.com"]}).write_csv(tmp_path / "raw.csv")
    job = RAW_EMAIL_JOBS[endpoint](tmp_path, tmp_path / "raw.csv")
    job["source"]["max_reject_fraction"] = 0.5
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert sorted(e for r in sandbox.state()["received"] for e in r["identifiers"]) == sorted(good)


INVISIBLE = {"\u200e": "left-to-right mark", "\u200f": "right-to-left mark", "\u00ad": "soft hyphen",
             "\u202a": "left-to-right embedding", "\u180e": "Mongolian vowel separator", "\ufe0f": "variation selector-16",
             "\U000e0041": "tag latin capital letter a", "\u2066": "left-to-right isolate"}


def test_invisible_characters_never_reach_the_hash(tmp_path, sandbox, sandbox_env) -> None:
    emails = [f"in{i}{c}visible@exam{c}ple.com{c}" for i, c in enumerate(INVISIBLE)]
    pl.DataFrame({"email": emails}).write_csv(tmp_path / "invisible.csv")
    done = run(tmp_path, tmp_path / "invisible.csv", sandbox_env)
    assert done.returncode == 0, done.stderr
    sent = sorted(h for r in sandbox.state()["received"] for h in r["identifiers"])
    assert sent == sorted(sha256_hex(f"in{i}visible@example.com") for i in range(len(INVISIBLE)))


def test_a_duplicated_mapped_header_is_refused_naming_the_column(tmp_path, sandbox, sandbox_env) -> None:
    path = write_bytes(tmp_path, "twice.csv", b"email,name,email\na@example.com,A,b@example.com\n")
    assert_one_line_error(run(tmp_path, path, sandbox_env), "column 'email' appears more than once in the header")
    assert sandbox.state()["attempts"] == []


def test_a_duplicated_header_no_job_reads_is_no_error(tmp_path, sandbox, sandbox_env) -> None:
    path = write_bytes(tmp_path, "notes.csv", b"email,note,note\na@example.com,x,y\n")
    assert run(tmp_path, path, sandbox_env).returncode == 0


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_blank_lines_are_skipped_never_counted_as_invalid_rows(tmp_path, sandbox, sandbox_env, newline) -> None:
    emails = [f"user{i}@example.com" for i in range(10)]
    text = newline.join(["email,name", *(f"{e},n{i}" for i, e in enumerate(emails[:5])), "",
                         *(f"{e},n{i}" for i, e in enumerate(emails[5:])), "", "", ""])
    done = run(tmp_path, write_bytes(tmp_path, "blank.csv", text.encode()), sandbox_env)
    assert done.returncode == 0, done.stderr
    facts = read_summary(tmp_path / "out")
    assert (facts["rows_read"], facts["rows_rejected"], facts["identifiers_accepted"]) == (10, 0, 10)
    single = "email\n" + "".join(f"{e}\n" for e in emails) + "\n\n\n"
    sandbox.reset()
    done = run(tmp_path, write_bytes(tmp_path, "single.csv", single.encode()), sandbox_env)
    assert done.returncode == 0, done.stderr
    assert len(sandbox.state()["received"][0]["identifiers"]) == 10


@pytest.mark.parametrize("column", ["email", "sha256"])
def test_blank_lines_never_count_against_the_reject_threshold(tmp_path, sandbox, sandbox_env, column) -> None:
    """Judged exactly: the cheap pass cannot vouch for a hash, nor for a file that is mostly blank lines."""
    values = [f"u{i}@example.com" for i in range(10)] + ["not an address"]
    if column == "sha256":
        values = [sha256_hex(v) for v in values[:10]] + ["not a hash"]
    text = f"{column},note\n" + "".join(f"{v},n\n" for v in values) + "\n" * 30
    done = run(tmp_path, write_bytes(tmp_path, "mostly-blank.csv", text.encode()), sandbox_env, columns={column: column},
               max_reject_fraction=0.1)
    assert done.returncode == 0, done.stderr
    facts = read_summary(tmp_path / "out")
    assert (facts["rows_read"], facts["rows_rejected"], facts["identifiers_accepted"]) == (11, 1, 10)


def test_a_row_of_empty_fields_with_data_beside_it_is_still_an_empty_email(tmp_path, sandbox, sandbox_env) -> None:
    text = "email,name\n" + "".join(f"u{i}@example.com,n\n" for i in range(30)) + ",has a name but no email\n"
    done = run(tmp_path, write_bytes(tmp_path, "gap.csv", text.encode()), sandbox_env)
    assert done.returncode == 0, done.stderr
    assert [(r["row"], r["reason"]) for r in rejects_rows(tmp_path / "out")] == [("31", "empty")]


FORMULAS = ["=HYPERLINK(\"http://x.example\",\"click\")", "+1-555-0100", "-2+3", "@SUM(A1)", "\t=1+2", "\r=1+2"]


def test_rejects_csv_neutralises_formulas_and_keeps_the_raw_value(tmp_path, sandbox, sandbox_env) -> None:
    cells = GOOD + FORMULAS + ["  Mixed Case@Example..COM "]
    pl.DataFrame({"email": cells}).write_csv(tmp_path / "formulas.csv")
    job = audience_job(tmp_path, tmp_path / "formulas.csv", columns={"email": "email"})
    job["source"]["max_reject_fraction"] = 0.5
    job["output"]["rejects_include_values"] = True
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    assert done.returncode == 0, done.stderr
    values = [row["value"] for row in rejects_rows(tmp_path / "out")]
    assert values == [f"'{f}" for f in FORMULAS] + ["  Mixed Case@Example..COM "]


HEADERLESS = {
    "full-width-at": ("alice\uff20example.com,Alice Smith\nbob@example.com,Bob Jones\n", ",", ["alice", "Alice Smith"]),
    "semicolons": ("carol@example.com;Carol Diaz\ndan@example.com;Dan Wu\n", ",", ["carol", "Carol Diaz"]),
    "names-only": ("Erin Stone,42 Elm Street\nFrank Ng,7 Oak Road\n", ",", ["Erin Stone", "42 Elm Street"]),
}


@pytest.mark.parametrize("case", list(HEADERLESS), ids=list(HEADERLESS))
def test_a_headerless_file_is_refused_without_echoing_its_first_row(tmp_path, sandbox, sandbox_env, case) -> None:
    text, delimiter, secrets = HEADERLESS[case]
    done = run(tmp_path, write_bytes(tmp_path, "people.csv", text.encode()), sandbox_env, delimiter=delimiter)
    assert_one_line_error(done, "column 'email' not found")
    assert str(tmp_path / "people.csv") in done.stderr
    assert not [s for s in secrets if s in done.stdout + done.stderr]


def _utf16(text: str) -> bytes:
    return text.encode("utf-16")  # little-endian with its byte-order mark, as Excel's "Unicode text" writes it


UNCLEAR = {
    "utf-16-le": (lambda p: write_bytes(p, "u16.csv", _utf16("email\na@example.com\n")), "the file is UTF-16; export it as UTF-8"),
    "utf-16-be": (lambda p: write_bytes(p, "u16be.csv", b"\xfe\xff" + "email\na@example.com\n".encode("utf-16-be")),
                  "the file is UTF-16; export it as UTF-8"),
    "utf-32": (lambda p: write_bytes(p, "u32.csv", "email\na@example.com\n".encode("utf-32")), "the file is UTF-32; export it as UTF-8"),
    "gzip-cut-in-its-header": (lambda p: write_bytes(p, "tiny.csv.gz", gzip.compress(b"email\na@example.com\n")[:15]),
                               "the compressed file is truncated or corrupt"),
    "parquet-cut-short": (lambda p: write_bytes(p, "cut.parquet", _parquet_bytes()[:-100]),
                          "not a complete Parquet file (truncated, or not Parquet at all)"),
}


def _parquet_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    pl.DataFrame({"email": [f"p{i}@example.com" for i in range(500)]}).write_parquet(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(UNCLEAR), ids=list(UNCLEAR))
def test_an_unreadable_file_is_refused_naming_it_and_what_is_wrong(tmp_path, sandbox, sandbox_env, case) -> None:
    make, message = UNCLEAR[case]
    path = make(tmp_path)
    done = run(tmp_path, path, sandbox_env)
    assert_one_line_error(done, message)
    assert str(path) in done.stderr and "Error" not in done.stderr  # no exception class names
    assert sandbox.state()["attempts"] == []


def _output_under_a_file(tmp_path):
    (tmp_path / "taken").write_text("a file where the output folder should be")
    return tmp_path / "taken" / "out"


def _output_that_is_a_file(tmp_path):
    (tmp_path / "out.txt").write_text("a file")
    return tmp_path / "out.txt"


@pytest.mark.parametrize("make_output", [_output_under_a_file, _output_that_is_a_file], ids=["under-a-file", "is-a-file"])
def test_an_output_location_that_cannot_be_written_is_a_config_error_found_before_reading(
        tmp_path, sandbox, sandbox_env, make_output) -> None:
    job = audience_job(tmp_path, tmp_path / "not-there-yet.csv", columns={"email": "email"})
    job["output"]["uri"] = str(make_output(tmp_path))
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env)
    # The source does not exist: an error about output.uri proves the output was checked before the input was read.
    assert_one_line_error(done, "output.uri")
    assert "--run-id" not in done.stderr and "Errno" not in done.stderr
    assert sandbox.state()["attempts"] == []


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root writes to a read-only folder anyway")
def test_an_output_folder_without_write_permission_is_a_config_error(tmp_path, sandbox, sandbox_env) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    job = audience_job(tmp_path, tmp_path / "not-there-yet.csv", columns={"email": "email"})
    job["output"]["uri"] = str(locked / "out")
    assert_one_line_error(run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env), "output.uri")


def test_a_recursive_glob_over_a_symlink_loop_ends_and_reads_each_file_once(tmp_path, sandbox, sandbox_env) -> None:
    parts = tmp_path / "parts"
    (parts / "day1").mkdir(parents=True)
    pl.DataFrame({"email": [f"a{i}@example.com" for i in range(5)]}).write_csv(parts / "day1" / "part-0.csv")
    pl.DataFrame({"email": [f"b{i}@example.com" for i in range(5)]}).write_csv(parts / "part-1.csv")
    (parts / "day1" / "again").symlink_to(parts)  # a loop: parts/day1/again/day1/again/...
    (parts / "up").symlink_to(tmp_path)  # and another, so that every level doubles the paths
    job = audience_job(tmp_path, f"{parts}/**/*.csv", columns={"email": "email"})
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env, timeout=60)
    assert done.returncode == 0, done.stderr
    facts = read_summary(tmp_path / "out")
    assert (facts["rows_read"], facts["identifiers_accepted"]) == (10, 10)
    assert sorted(f["uri"] for f in facts["source_files"]) == [str(parts / "day1" / "part-0.csv"), str(parts / "part-1.csv")]
