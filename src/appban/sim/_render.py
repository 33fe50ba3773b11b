"""The demo for a person: the company, the campaign day by day, where things ended.

Tables go through ``appban.output``: boxed on a terminal, plain text when piped. A
pipe gets 80 columns, so the day table keeps to numbers and the day's events follow
it as lines.
"""

from __future__ import annotations

from typing import Any

from appban import output
from appban.policy.states import STATES

_DAY_STATES = ("violating", "blocked", "unverified", "compliant", "exempt")


def report(s: dict[str, Any]) -> None:
    _company(s)
    output.line()
    _days(s["days"])
    output.line()
    _final(s["final"])
    output.line()
    _summary(s)


def _company(s: dict[str, Any]) -> None:
    f, p, d = s["fleet"], s["policy"], s["dry_run"]
    platforms = ", ".join(f"{k} {v:,}" for k, v in f["by_platform"].items())
    readers = ", ".join(f"{k} {v:,}" for k, v in f["mobile_reading_mail_by"].items())
    apps = ", ".join(f"{k} {v:,}" for k, v in f["banned_apps"].items())
    output.line(f"appban demo: a synthetic company of {s['employees']:,} (seed {s['seed']})")
    output.line(
        f"  {f['people']:,} people in {f['org_units']} org units and {f['time_zones']} time "
        f"zones; {f['devices']:,} devices: {platforms}"
    )
    output.line(f"  phones and tablets reading mail: {f['mobile_reading_mail']:,} (ownership/inventory: {readers})")
    output.line(f"  TikTok on {f['banned_app_devices']:,} devices the inventory can see: {apps}")
    output.line(
        f"policy {p['id']}: effective {p['effective']}, deadline {p['deadline']}, reminders "
        f"{' and '.join(p['reminders'])} before it; inventories older than "
        f"{p['max_inventory_age']} prove nothing"
    )
    output.line(
        f"  dry run: {d['in_scope']['devices']:,} devices of {d['in_scope']['people']:,} people "
        f"in scope; {d['violating_now']:,} violate it now ({d['people_affected']:,} people), "
        f"{d['would_be_denied_at_deadline']:,} would lose mail at the deadline"
    )


def _days(days: list[dict[str, Any]]) -> None:
    columns = ["day", "date", *_DAY_STATES, "removed", "restored"]
    rows = [
        (
            d["day"],
            d["date"][5:],
            *(d["states"][s] for s in _DAY_STATES),
            d["removed"],
            d["restored"],
        )
        for d in days
    ]
    output.table("the campaign, day by day (devices at the end of each day, UTC)", columns, rows)
    for d in days:
        if d["events"]:
            output.line(f"  day {d['day']} ({d['date']}): {'; '.join(d['events'])}")


def _final(f: dict[str, Any]) -> None:
    output.line(f"final status of {f['policy']} ({f['status']}, {f['mode']}) as of {f['now']}")
    rows = [(k, *(f"{v['states'][s]:,}" for s in STATES)) for k, v in f["by"].items()]
    rows.append(("total", *(f"{f['states'][s]:,}" for s in STATES)))
    output.table(None, ["platform", *STATES], rows)
    output.line(f"people affected: {f['people_affected']:,}")


def _summary(s: dict[str, Any]) -> None:
    t = s["totals"]
    output.line(
        f"{t['memo']:,} people got the memo; {t['removed_before_deadline']:,} devices were "
        f"cleaned before the deadline; {t['blocked_at_deadline']:,} were blocked at it "
        f"({t['people_cut_off']:,} people), {t['restored']:,} let back in once clean; "
        f"{t['still_blocked']:,} devices of {t['people_still_blocked']:,} people still blocked"
    )
    e, a = s["exemption"], s["attestation"]
    output.line(f"exemption: {e['person']} until {e['until']} ({e['devices']} device(s))")
    output.line(f"attestation: {a['person']} for {a['device']}, now {a['state']}")
    output.line(
        f"done in {s['elapsed_seconds']:.1f} s: {s['checkins']:,} check-ins, {s['audit_entries']:,} audit entries"
    )
    output.line(f"database: {s['db']} (a demo database: the next `appban demo` replaces it)")
    output.line("look further:")
    for hint in s["hints"]:
        output.line(f"  {hint}")
