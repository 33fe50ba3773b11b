"""``audit list``, ``audit export``, ``audit head`` and ``audit verify --anchor``.

The export is checked by an independent verifier written here from the export's own
first line (the format description), not with appban's code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from helpers_semantics import AFTER, APPLIED, BEFORE, NEXT_DAY, TIKTOK_ANDROID, Appban, checkin

LATER = "2020-07-13T09:00:00Z"


@pytest.fixture
def logged(ab: Appban) -> Appban:
    """Catalog, import, policy, state, decision, exemption and withdrawal entries."""
    ab.ingest(checkin("a", apps=[TIKTOK_ANDROID]), checkin("b", owner="bob@example.com"))
    ab.apply()
    ab("evaluate", now=AFTER)
    ab(
        "exempt", "add", "--policy", "tiktok-mail", "--device", "b",
        "--until", "2020-08-01T00:00:00Z", "--reason", "test", now=AFTER,
    )  # fmt: skip
    ab("policy", "withdraw", "tiktok-mail", "--reason", "error", now=NEXT_DAY)
    return ab


def all_entries(ab: Appban) -> list[dict[str, Any]]:
    return ab("audit", "list", now=LATER)  # type: ignore[no-any-return]


# -- audit list -----------------------------------------------------------------------------


def test_list_is_one_json_document_a_list_of_entries(logged: Appban) -> None:
    entries = all_entries(logged)
    rows = logged.sql("SELECT seq, action, subject, data, hash FROM audit_log ORDER BY seq")
    assert isinstance(entries, list) and len(entries) == len(rows)
    for e, (seq, action, subject, data, digest) in zip(entries, rows, strict=True):
        assert set(e) == {"seq", "at", "action", "subject", "data", "hash"}
        assert (e["seq"], e["action"], e["subject"], e["hash"]) == (seq, action, subject, digest)
        assert e["data"] == json.loads(data)  # parsed, not a string
        assert e["at"].endswith("Z")


def test_list_filters(logged: Appban) -> None:
    def seqs(*args: str) -> list[int]:
        return [e["seq"] for e in logged("audit", "list", *args, now=LATER)]

    entries = all_entries(logged)

    def expect(keep: Any) -> list[int]:
        return [e["seq"] for e in entries if keep(e)]

    assert seqs("--since", APPLIED) == expect(lambda e: e["at"] >= APPLIED)
    assert seqs("--until", APPLIED) == expect(lambda e: e["at"] < APPLIED)
    assert seqs("--since", BEFORE, "--until", AFTER) == expect(lambda e: BEFORE <= e["at"] < AFTER)
    assert seqs("--kind", "policy.apply") == expect(lambda e: e["action"] == "policy.apply")
    assert seqs("--kind", "exemption", "--kind", "policy.withdraw") == expect(
        lambda e: e["action"] in ("exemption", "policy.withdraw")
    )
    policy = seqs("--policy", "tiktok-mail")
    assert policy == expect(lambda e: e["subject"] == "tiktok-mail" or e["subject"].startswith("tiktok-mail/"))
    assert {e["action"] for e in entries if e["seq"] in policy} >= {"policy.apply", "state", "policy.withdraw"}
    # A device by its source's id or appban's: its own entries and the sweeps that list it.
    device = seqs("--device", "a")
    assert device == seqs("--device", "dev-1")
    assert device == expect(
        lambda e: (
            e["subject"] in ("dev-1",)
            or e["subject"].endswith("/dev-1")
            or (e["action"] == "states" and any(c[0] == "dev-1" for c in e["data"]["changes"]))
        )
    )
    assert {e["action"] for e in entries if e["seq"] in device} >= {"decision"}
    assert "dev-2" not in json.dumps([e for e in entries if e["seq"] in device and e["action"] != "states"])
    assert seqs("--kind", "no-such-kind") == []
    assert seqs("--limit", "2") == [e["seq"] for e in entries][-2:]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--since", "yesterday"], "--since"),
        (["--since", "2020-07-10T00:00:00"], "--since"),  # no offset: which zone is unknown
        (["--until", "2020-07-11"], "--until"),
        (["--until", "2020-13-01T00:00:00Z"], "--until"),
        (["--since", AFTER, "--until", BEFORE], "--until"),
        (["--policy", "no-such-policy"], "policy"),
        (["--device", "no-such-device"], "device"),
        (["--kind", "State\x1b[2J"], "--kind"),
    ],
)
def test_list_bad_filters(logged: Appban, args: list[str], field: str) -> None:
    result = logged.run("audit", "list", *args, now=LATER)
    assert (result.code, result.out) == (2, "")
    assert field in result.err and result.err.count("\n") == 1
    assert "\x1b" not in result.err


def test_list_as_text(logged: Appban) -> None:
    result = logged.run("audit", "list", "--kind", "policy.withdraw", now=LATER, as_json=False)
    assert result.code == 0
    assert "policy.withdraw" in result.out and "reason=error" in result.out
    assert result.out.endswith("1 entry\n")


# -- audit export ---------------------------------------------------------------------------


def verify_export(path: Path) -> list[str]:
    """An independent verifier: only the export and its first line's description.
    Returns what is wrong (nothing for an intact chain)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["hash"] == "sha256" and header["encoding"] == "utf-8"
    fields, sep = header["hashed_fields"], header["separator"]
    wrong: list[str] = []
    prev, expected_seq = header["genesis"], 1
    entries = [json.loads(line) for line in lines[1:]]
    for e in entries:
        if e["seq"] != expected_seq:
            wrong.append(f"seq {e['seq']} where {expected_seq} was expected")
        if e["prev_hash"] != prev:
            wrong.append(f"entry {e['seq']} does not link to the one before")
        text = sep.join(str(e[f]) for f in fields)
        if hashlib.sha256(text.encode(header["encoding"])).hexdigest() != e["hash"]:
            wrong.append(f"entry {e['seq']} does not match its hash")
        prev, expected_seq = e["hash"], e["seq"] + 1
    if header["entries"] != len(entries) or (entries and header["head"]["digest"] != entries[-1]["hash"]):
        wrong.append("entries missing from the end")
    return wrong


def test_an_export_verifies_elsewhere(logged: Appban, tmp_path: Path) -> None:
    out = tmp_path / "chain.jsonl"
    doc = logged("audit", "export", str(out), now=LATER)
    count = logged.sql("SELECT count(*) FROM audit_log")[0][0]
    [(seq, digest)] = logged.sql("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    assert doc == {"file": str(out), "entries": count, "head": {"seq": seq, "digest": digest}}
    assert verify_export(out) == []
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == count + 1
    first = json.loads(lines[1])
    [(at,)] = logged.sql("SELECT at FROM audit_log WHERE seq = 1")
    assert first["at"] == at and isinstance(first["at"], int)  # as stored and hashed
    assert first["time"].endswith("Z")  # and readable
    assert isinstance(first["data"], str)  # the text exactly as hashed


def _rewrite(path: Path, change: Any) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines[1:]]
    entries = change(entries)
    path.write_text("\n".join([lines[0], *(json.dumps(e) for e in entries)]) + "\n", encoding="utf-8")


def _edit(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entries[3]["data"] = entries[3]["data"].replace("}", ',"x":1}', 1)
    return entries


def _swap(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entries[3], entries[4] = entries[4], entries[3]
    return entries


@pytest.mark.parametrize(
    "change",
    [_edit, _swap, lambda es: es[:3] + es[4:], lambda es: es[:-1], lambda es: [{**es[0], "at": 1}, *es[1:]]],
    ids=["edited", "reordered", "removed", "cut-off", "retimed"],
)  # fmt: skip
def test_a_tampered_export_fails(logged: Appban, tmp_path: Path, change: Any) -> None:
    out = tmp_path / "chain.jsonl"
    logged("audit", "export", str(out), now=LATER)
    _rewrite(out, change)
    assert verify_export(out) != []


def test_export_to_a_place_that_cannot_be_written(logged: Appban, tmp_path: Path) -> None:
    target = tmp_path / "no-such-folder" / "chain.jsonl"
    result = logged.run("audit", "export", str(target), now=LATER)
    assert (result.code, result.out) == (2, "")
    assert str(target) in result.err and "cannot write" in result.err
    assert not target.parent.exists()


# -- audit head and verify --anchor ---------------------------------------------------------


def head(ab: Appban) -> dict[str, Any]:
    return ab("audit", "head", now=LATER)  # type: ignore[no-any-return]


def anchored(ab: Appban, digest: str) -> tuple[int, dict[str, Any]]:
    result = ab.run("audit", "verify", "--anchor", digest, now=LATER)
    return result.code, result.json


def test_head_is_the_last_entry(logged: Appban) -> None:
    [(seq, digest)] = logged.sql("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    assert head(logged) == {"seq": seq, "digest": digest}
    text = logged.run("audit", "head", now=LATER, as_json=False)
    assert text.out == f"{seq} {digest}\n"


def test_an_anchor_keeps_passing_as_the_log_grows(logged: Appban) -> None:
    kept = head(logged)
    assert anchored(logged, kept["digest"]) == (0, {"ok": True, "entries": kept["seq"], "problems": [],
                                                   "anchor": kept["digest"]})  # fmt: skip
    logged.ingest(checkin("c", owner="cat@example.com"), now=LATER)
    logged.apply(now=LATER, deadline="2020-08-01T00:00:00Z")
    assert head(logged)["seq"] > kept["seq"]
    code, doc = anchored(logged, kept["digest"].upper())
    assert (code, doc["ok"]) == (0, True)


def test_a_cut_log_fails_the_anchor(logged: Appban) -> None:
    """Entries cut off the end, the recorded head moved back to match: the plain check
    cannot tell; the anchor kept outside the database can."""
    kept = head(logged)
    logged.write_sql(
        f"DELETE FROM audit_log WHERE seq >= {kept['seq'] - 2}",
        "UPDATE meta SET value = (SELECT seq || ':' || hash FROM audit_log ORDER BY seq DESC LIMIT 1) "
        "WHERE key = 'audit_head'",
    )
    assert logged.run("audit", "verify", now=LATER).code == 0
    code, doc = anchored(logged, kept["digest"])
    assert code == 1 and doc["ok"] is False
    assert "anchor" in doc["problems"][-1]["problem"]


def test_a_log_rewritten_whole_fails_the_anchor(logged: Appban) -> None:
    """Someone who can write the database edits an old entry and recomputes every hash
    after it, and the recorded head: the chain is intact again, the anchor is not."""
    from appban.audit.log import GENESIS, entry_hash

    kept = head(logged)
    rows = logged.sql("SELECT seq, at, action, subject, data FROM audit_log ORDER BY seq")
    statements, prev = [], GENESIS
    for seq, at, action, subject, data in rows:
        if seq == 3:
            data = data.replace("}", ',"forged":true}', 1)
        digest = entry_hash(seq, at, action, subject, data, prev)
        statements.append(
            f"UPDATE audit_log SET data = '{data.replace(chr(39), chr(39) * 2)}', prev_hash = '{prev}', "
            f"hash = '{digest}' WHERE seq = {seq}"
        )
        prev = digest
    statements.append(f"UPDATE meta SET value = '{rows[-1][0]}:{prev}' WHERE key = 'audit_head'")
    logged.write_sql(*statements)
    assert logged.run("audit", "verify", now=LATER).code == 0  # consistent: the plain check passes
    code, doc = anchored(logged, kept["digest"])
    assert code == 1 and "anchor" in doc["problems"][-1]["problem"]
    # An anchor taken before the forged entry still holds: the chain up to it is unchanged.
    [(early,)] = logged.sql("SELECT hash FROM audit_log WHERE seq = 2")
    assert anchored(logged, early)[0] == 0


def test_an_edited_anchor_entry_fails(logged: Appban) -> None:
    kept = head(logged)
    logged.write_sql(f"UPDATE audit_log SET subject = 'x' WHERE seq = {kept['seq']}")
    code, doc = anchored(logged, kept["digest"])
    assert code == 1 and doc["problems"][0]["seq"] == kept["seq"]


@pytest.mark.parametrize("digest", ["", "abc", "g" * 64, "0" * 63, "0" * 65])
def test_a_malformed_anchor_is_bad_input(logged: Appban, digest: str) -> None:
    result = logged.run("audit", "verify", "--anchor", digest, now=LATER)
    assert (result.code, result.out) == (2, "")
    assert "--anchor" in result.err and result.err.count("\n") == 1


def test_the_documented_verifier_passes_an_export_and_fails_a_tampered_one(logged: Appban, tmp_path: Path) -> None:
    """docs/concepts.md shows a few lines of Python that verify an export: they must."""
    import re

    docs = Path(__file__).parents[2] / "docs" / "concepts.md"
    [code] = re.findall(r"```python\n(.*?)```", docs.read_text(encoding="utf-8"), re.S)
    out = tmp_path / "chain.jsonl"
    logged("audit", "export", str(out), now=LATER)
    script = code.replace('"chain.jsonl"', repr(str(out)))
    exec(compile(script, "concepts.md", "exec"), {})  # intact: no assertion fails
    _rewrite(out, _edit)
    with pytest.raises(AssertionError, match="edited"):
        exec(compile(script, "concepts.md", "exec"), {})


def test_the_anchor_takes_what_audit_head_prints(logged: Appban) -> None:
    printed = logged.run("audit", "head", now=LATER, as_json=False).out.strip()
    seq, digest = printed.split(" ")
    for anchor in (printed, f"{seq}:{digest}", digest, f"  {seq}  {digest.upper()} "):
        code, doc = anchored(logged, anchor)
        assert (code, doc["ok"], doc["anchor"]) == (0, True, digest), anchor
    assert anchored(logged, printed)[1]["anchor_seq"] == int(seq)


def test_an_anchor_with_the_wrong_sequence_number_fails(logged: Appban) -> None:
    kept = head(logged)
    code, doc = anchored(logged, f"{kept['seq'] - 1} {kept['digest']}")
    assert code == 1 and "anchor" in doc["problems"][-1]["problem"]


@pytest.mark.parametrize("anchor", ["x " + "0" * 64, "-1:" + "0" * 64, "1 2 " + "0" * 64, ":" + "0" * 64])
def test_a_malformed_sequence_number_is_bad_input(logged: Appban, anchor: str) -> None:
    result = logged.run("audit", "verify", "--anchor", anchor, now=LATER)
    assert (result.code, result.out) == (2, "")
    assert "--anchor" in result.err and result.err.count("\n") == 1
