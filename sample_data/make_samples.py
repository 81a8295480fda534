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


if __name__ == "__main__":
    customers().write_csv(HERE / "customers.csv")
    customers().write_parquet(HERE / "customers.parquet")
    hashed_unsubscribes().write_csv(HERE / "suppression_hashed.csv")
    deletion_requests().write_csv(HERE / "deletion_requests.csv")
    unsubscribes().write_csv(HERE / "unsubscribes.csv")
    print("wrote", *sorted(p.name for p in HERE.glob("*.*") if p.suffix != ".py"))
