"""One line each for a sync plan and its outcome: what the log, the CLI and a dry run show. Counts only."""

from __future__ import annotations

from typing import Any


def describe_plan(report: dict[str, Any], dry_run: bool = False) -> str:
    base = f"state version {report['base_version']}" if report["base_version"] else "no state yet: everything is new"
    if report["mode"] == "mirror":
        changes = (f"{report['new']:,} to include, {report['left']:,} to exclude "
                   f"({report['exclude_fraction']:.1%} of the {report['list_size']:,} in the list)")
    else:
        changes = f"{report['new']:,} new to send"
    line = (f"sync plan ({report['mode']}, against {base}): {changes}, {report['unchanged']:,} unchanged, "
            f"{report['skipped_rejected']:,} skipped (rejected by an earlier run); {report['requests']:,} requests, "
            f"estimated send time at the limits {report['estimated_send_seconds']:.1f}s")
    if report.get("caught_up_runs"):
        line += f"; folded in unfinished run(s) {', '.join(report['caught_up_runs'])}"
    if report.get("needs_yes"):
        line += (f"; a real run would refuse this without --yes (more than max_exclude_fraction="
                 f"{report['max_exclude_fraction']:g} of the list)")
    return line + ("; dry run: nothing sent, state unchanged" if dry_run else "")


def describe_outcome(report: dict[str, Any]) -> str:
    if report.get("state_error"):
        return report["state_error"]
    settled = f"{report.get('accepted_new', 0):,} new accepted"
    if report["mode"] == "mirror":
        settled += f", {report.get('accepted_left', 0):,} excluded"
    settled += (f", {report.get('rejected', 0):,} refused for good (recorded, not retried), "
                f"{report.get('not_settled', 0):,} not settled (tried again next run)")
    version = f"state version {report['version']} written" if report.get("version") else "state unchanged"
    return (f"sync outcome: {settled}; {version}: {report.get('identifiers_in_state', 0):,} identifiers, "
            f"{report.get('rejected_in_state', 0):,} rejected")
