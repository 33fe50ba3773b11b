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
    if "explain" in s:
        _why_unverified(s["explain"]["unverified"], s["policy"])
    output.line()
    _summary(s)


def _company(s: dict[str, Any]) -> None:
    f, p, d = s["fleet"], s["policy"], s["dry_run"]
    platforms = ", ".join(f"{k} {v:,}" for k, v in f["by_platform"].items())
    readers = ", ".join(f"{k} {v:,}" for k, v in f["mobile_reading_mail_by"].items())
    apps = ", ".join(f"{k} {v:,}" for k, v in f["banned_apps"].items())
    output.line(f"appban demo: a synthetic company of {s['employees']:,} (seed {s['seed']})")
    output.line(
        f"  {output.plural(f['people'], 'person', 'people')} in {output.plural(f['org_units'], 'org unit')} and "
        f"{output.plural(f['time_zones'], 'time zone')}; {output.plural(f['devices'], 'device')}: {platforms}"
    )
    output.line(f"  phones and tablets reading mail: {f['mobile_reading_mail']:,} (ownership/inventory: {readers})")
    output.line(f"  TikTok on {output.plural(f['banned_app_devices'], 'device')} the inventory can see: {apps}")
    output.line(
        f"policy {p['id']}: effective {p['effective']}, deadline {p['deadline']}, reminders "
        f"{' and '.join(p['reminders'])} before it; inventories older than "
        f"{p['max_inventory_age']} prove nothing"
    )
    violating = d["violating_now"]
    output.line(
        f"  dry run: {output.plural(d['in_scope']['devices'], 'device')} of "
        f"{output.plural(d['in_scope']['people'], 'person', 'people')} in scope; "
        f"{violating:,} {_verb(violating, 'violates', 'violate')} it now "
        f"({output.plural(d['people_affected'], 'person', 'people')}), "
        f"{d['would_be_denied_at_deadline']:,} would lose mail at the deadline"
    )
    if "explain" in s:
        _why_fewer(s["explain"]["banned_app_devices"], d["violating_now"])


def _why_fewer(b: dict[str, Any], violating: int) -> None:
    """How "TikTok on N devices" becomes "M violate it now": the devices the policy does not hold."""
    others = b["devices"] - violating
    if not others:
        return
    reasons = [_left_out(key, n) for key, n in b["out_of_scope"].items()]
    reasons += [
        f"{n:,} {_verb(n, *_HELD.get(state, (state, state)))}"
        for state, n in b["states"].items()
        if state not in ("out_of_scope", "violating", "blocked")
    ]
    output.line(
        f"  of the {output.plural(b['devices'], 'device')} with TikTok, {others:,} "
        f"{_verb(others, 'does', 'do')} not violate it: " + "; ".join(reasons)
    )


# Why a device with the app is not held by the policy (keys from sim/_explain.py),
# for one device and for several.
_LEFT_OUT = {
    "no_mail": ("{n} does not read company mail", "{n} do not read company mail"),
    "not_in_included_groups": (
        "{n} belongs to none of the groups it names",
        "{n} belong to none of the groups it names",
    ),
    "platform": ("{n} runs {what}, which it does not name", "{n} run {what}, which it does not name"),
    "ownership": ("{n} is {what}, which it leaves out", "{n} are {what}, which it leaves out"),
    "group": ("{n} belongs to {what}, which it excludes", "{n} belong to {what}, which it excludes"),
}
_HELD = {
    "exempt": ("is exempt", "are exempt"),
    "compliant": ("has an attested removal", "have an attested removal"),
    "unverified": ("is unverified", "are unverified"),
}


def _left_out(key: str, n: int) -> str:
    kind, _, what = key.partition(":")
    forms = _LEFT_OUT.get(kind, ("{n} is out of scope ({key})", "{n} are out of scope ({key})"))
    return _verb(n, *forms).format(n=f"{n:,}", what=what, key=key)


def _verb(n: int, one: str, many: str) -> str:
    """The form that agrees with ``n``: ``1 does``, ``2 do``."""
    return one if n == 1 else many


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


def _why_unverified(u: dict[str, Any], p: dict[str, Any]) -> None:
    """Why unverified devices still read mail (or do not): the policy's on_unverified."""
    if not u["devices"]:
        return
    because = "; ".join(
        _verb(n, *_UNVERIFIED.get(k, ("{n} for another reason", "{n} for another reason"))).format(
            n=f"{n:,}", age=p["max_inventory_age"]
        )
        for k, n in u["because"].items()
    )
    n = u["devices"]
    devices = output.plural(n, "unverified device")
    if u["on_unverified"] == "allow":
        output.line(
            f"{devices} {_verb(n, 'keeps its', 'keep their')} mail: nothing proves the app is gone, but "
            f"the policy says on_unverified: allow ({because}); with on_unverified: block "
            f"{_verb(n, 'it', 'they')} would lose mail at the deadline"
        )
    else:
        output.line(
            f"{devices} {_verb(n, 'loses its', 'lose their')} mail after the deadline: the policy says "
            f"on_unverified: block ({because})"
        )


_UNVERIFIED = {
    "managed_inventory": (
        "{n} reports managed apps only, which cannot show a personal app",
        "{n} report managed apps only, which cannot show a personal app",
    ),
    "stale_inventory": ("{n} has an inventory older than {age}", "{n} have an inventory older than {age}"),
    "no_inventory": ("{n} has no inventory", "{n} have no inventory"),
    "older_catalog": ("{n} was last seen against an older catalog", "{n} were last seen against an older catalog"),
}


def _summary(s: dict[str, Any]) -> None:
    t = s["totals"]
    removed, blocked = t["removed_before_deadline"], t["blocked_at_deadline"]
    output.line(
        f"{output.plural(t['memo'], 'person', 'people')} got the memo; "
        f"{output.plural(removed, 'device')} {_verb(removed, 'was', 'were')} cleaned before the deadline; "
        f"{blocked:,} {_verb(blocked, 'was', 'were')} blocked at it "
        f"({output.plural(t['people_cut_off'], 'person', 'people')}), {t['restored']:,} let back in once clean; "
        f"{output.plural(t['still_blocked'], 'device')} of "
        f"{output.plural(t['people_still_blocked'], 'person', 'people')} still blocked"
    )
    n = s["notices"]
    kinds = ", ".join(f"{kind} {count:,}" for kind, count in n["sent"].items())
    output.line(
        f"notices: {output.plural(sum(n['sent'].values()), 'notice')} delivered to {n['delivered_to']}"
        + (f" ({kinds})" if kinds else "")
        + f"; {n['waiting']:,} waiting, {n['failed']:,} failed"
    )
    e, a = s["exemption"], s["attestation"]
    output.line(f"exemption: {e['person']} until {e['until']} ({output.plural(e['devices'], 'device')})")
    output.line(f"attestation: {a['person']} for {a['device']}, now {a['state']}")
    output.line(
        f"done in {s['elapsed_seconds']:.1f} s: {output.plural(s['checkins'], 'check-in')}, "
        f"{output.plural(s['audit_entries'], 'audit entry', 'audit entries')}"
    )
    output.line(f"database: {s['db']} (a demo database: the next `appban demo` replaces it)")
    output.line("look further:")
    for hint in s["hints"]:
        output.line(f"  {hint}")
