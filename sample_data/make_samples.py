"""Regenerate the small, deliberately messy sample inputs (synthetic addresses only)."""

from __future__ import annotations

import hashlib
import base64
from pathlib import Path

import polars as pl

HERE = Path(__file__).parent


def customers() -> pl.DataFrame:
    emails = [f"customer{i:03d}@example.com" for i in range(1, 181)]
    messy = []
    for i, email in enumerate(emails):
        if i % 7 == 0:
            email = email.upper()
        if i % 5 == 0:
            email = f"  {email} "
        if i % 11 == 0:
            email = email.replace("@", " @")
        messy.append(email)
    messy += [emails[3].upper(), f" {emails[4]}", emails[10]]  # duplicates after normalisation
    messy += ["not-an-email", "", "customer@nodot", None, "two@@example.com"]  # 5 invalid of 188 (2.7%)
    ids = list(range(1, len(messy) + 1))
    return pl.DataFrame({"Customer ID": ids, "Email Address": messy, "Country": ["US"] * len(messy)})


def hashed_unsubscribes() -> pl.DataFrame:
    emails = [f"lapsed{i:03d}@example.org" for i in range(1, 101)]
    digests = [hashlib.sha256(e.encode()).digest() for e in emails]
    values = [d.hex() if i % 2 else base64.b64encode(d).decode() for i, d in enumerate(digests)]
    values[7] = values[7].upper()  # hex in capitals still matches
    values.append("deadbeef")  # neither encoding: rejected
    return pl.DataFrame({"email_sha256": values, "source": ["crm"] * len(values)})


def deletion_requests() -> pl.DataFrame:
    emails = [f"Forget.Me{i:02d}@Example.net " for i in range(1, 31)]
    emails += ["forget.me01@example.net", "no-at-sign.example.net"]  # a duplicate and an invalid row
    return pl.DataFrame({"ticket": [f"DSR-{i}" for i in range(len(emails))], "email": emails})


def unsubscribes() -> pl.DataFrame:
    emails = [f" Unsub{i:03d}@Example.org" for i in range(1, 121)]
    emails += ["unsub001@example.org", "UNSUB002@EXAMPLE.ORG", "broken@", ""]
    return pl.DataFrame({"unsubscribed_at": ["2026-11-21"] * len(emails), "email": emails})


def privacy_requests() -> pl.DataFrame:
    """Opt-outs by email or phone, deletions by email or hash; some rows break the identifier rules."""
    rows = []
    for i in range(1, 21):
        rows.append(("NETWORK_OPT_OUT", f" Person{i:02d}@Example.com", None, None))
    for i, phone in enumerate(["(415) 555-0101", "415.555.0102", "+1 415 555 0103", "+44 20 7946 0958", "4155550105"]):
        rows.append(("network_opt_out", None, phone, None))
    for i in range(21, 31):
        digest = hashlib.sha256(f"person{i:02d}@example.com".encode()).digest()
        rows.append(("NETWORK_DATA_DELETION", None, None, digest.hex() if i % 2 else base64.b64encode(digest).decode()))
    rows.append(("NETWORK_DATA_DELETION", "person01@example.com", None, None))  # supersedes person01's opt-out
    rows.append(("NETWORK_DATA_DELETION", None, "(415) 555-0199", None))  # a phone on a deletion: rejected
    rows.append(("NETWORK_OPT_OUT", "both@example.com", "(415) 555-0198", None))  # both: rejected
    return pl.DataFrame(rows, schema=["request_type", "email", "phone", "email_sha256"], orient="row")


def offboarded_merchants() -> pl.DataFrame:
    return pl.DataFrame({"merchant_account_id": ["3008848650853038987", "3008848650853038988", " 3008848650853038989 ",
                                                 "3008848650853038987"], "offboarded_on": ["2026-11-20"] * 4})


if __name__ == "__main__":
    customers().write_csv(HERE / "customers.csv")
    customers().write_parquet(HERE / "customers.parquet")
    hashed_unsubscribes().write_csv(HERE / "suppression_hashed.csv")
    deletion_requests().write_csv(HERE / "deletion_requests.csv")
    unsubscribes().write_csv(HERE / "unsubscribes.csv")
    privacy_requests().write_csv(HERE / "privacy_requests.csv")
    offboarded_merchants().write_csv(HERE / "offboarded_merchants.csv")
    print("wrote", *sorted(p.name for p in HERE.glob("*.*") if p.suffix != ".py"))
