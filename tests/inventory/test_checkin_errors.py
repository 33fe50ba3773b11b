"""Bad check-ins (SPEC: Check-in format) through ``appban import appban FILE``.

Every answer: exit 2, one printable line on stderr naming the file, the line and
the field, no traceback, and nothing written (the whole import is one transaction).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from helpers_cli import NOW, Fleet, assert_bad_input, count, run_process, where

GOOD: dict[str, Any] = {
    "source": "agent",
    "device": {
        "id": "NEW-PHONE-1",
        "platform": "android",
        "ownership": "personal",
        "owner": "jane.doe@example.com",
        "model": "Pixel 3",
        "os_version": "10",
        "eas_device_ids": ["EASNEW1"],
        "inventory_scope": "full",
    },
    "observed_at": "2020-07-11T15:00:00Z",
    "apps": [
        {"id": "com.zhiliaoapp.musically", "name": "TikTok", "version": "16.5.0"},
        {"id": "com.example.notes", "name": "Notes"},
    ],
}


def checkin(device_id: str = "NEW-PHONE-1", **changes: Any) -> dict[str, Any]:
    """A valid check-in, with ``changes`` given as dotted paths: ``{"device.platform": 5}``.
    A value of ``...`` removes the field."""
    doc = copy.deepcopy(GOOD)
    doc["device"]["id"] = device_id
    # One DeviceId per phone: two records sharing one are one device (linked).
    doc["device"]["eas_device_ids"] = ["EAS" + device_id.replace("-", "")]
    for path, value in changes.items():
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        key: Any = int(last) if last.isdigit() else last
        if value is ...:
            del node[key]
        else:
            node[key] = value
    return doc


def jsonl(*docs: dict[str, Any]) -> str:
    return "".join(json.dumps(d) + "\n" for d in docs)


def import_file(fleet: Fleet, path: Path, *more: str, env: dict[str, str] | None = None):  # noqa: ANN201
    return fleet.run("import", "appban", str(path), *more, env=env)


def test_the_good_check_in_is_accepted(fleet: Fleet) -> None:
    """The baseline of every test below: without the defect, the file imports."""
    path = fleet.write("good.jsonl", jsonl(checkin(), checkin("NEW-PHONE-2")))
    result = import_file(fleet, path)
    assert result.code == 0, result.err
    assert fleet.devices() == 4


# -- files and syntax ------------------------------------------------------------------------


def test_missing_file(fleet: Fleet) -> None:
    path = fleet.tmp / "absent.jsonl"
    assert_bad_input(import_file(fleet, path), where(path), "cannot read")
    fleet.assert_unchanged()


def test_a_directory_is_not_a_file(fleet: Fleet) -> None:
    assert_bad_input(import_file(fleet, fleet.tmp), where(fleet.tmp), "cannot read")
    fleet.assert_unchanged()


def test_truncated_single_document_names_its_last_line(fleet: Fleet) -> None:
    text = json.dumps(checkin(), indent=2)
    cut = text[: text.index('"apps"')]  # ends inside the object, on the line before "apps"
    path = fleet.write("truncated.json", cut)
    line = assert_bad_input(import_file(fleet, path), "malformed JSON")
    assert where(path, cut.count("\n") + 1) in line or where(path, cut.count("\n")) in line, line
    fleet.assert_unchanged()


def test_truncated_line_in_json_lines(fleet: Fleet) -> None:
    good = jsonl(checkin("NEW-1"), checkin("NEW-2"))
    bad = json.dumps(checkin("NEW-3"))[:-20] + "\n"
    path = fleet.write("truncated.jsonl", good + bad + jsonl(checkin("NEW-4")))
    assert_bad_input(import_file(fleet, path), where(path, 3), "malformed JSON")
    fleet.assert_unchanged()


def test_line_numbers_count_blank_lines(fleet: Fleet) -> None:
    text = "\n" + jsonl(checkin("NEW-1")) + "\n\n" + jsonl(checkin("NEW-2", **{"device.platform": "palmos"}))
    path = fleet.write("blank-lines.jsonl", text)
    assert_bad_input(import_file(fleet, path), where(path, 5), "device.platform")
    fleet.assert_unchanged()


def test_error_in_a_pretty_printed_document_names_the_line_of_the_field(fleet: Fleet) -> None:
    text = json.dumps(checkin(**{"device.inventory_scope": "partial"}), indent=2)
    path = fleet.write("pretty.json", text)
    expected = next(i for i, ln in enumerate(text.splitlines(), 1) if '"inventory_scope"' in ln)
    assert_bad_input(import_file(fleet, path), where(path, expected), "device.inventory_scope")
    fleet.assert_unchanged()


@pytest.mark.parametrize("text", ["[1, 2, 3]\n", '"a check-in"\n', "42\n", "null\n"])
def test_not_an_object(fleet: Fleet, text: str) -> None:
    path = fleet.write("not-object.jsonl", jsonl(checkin("NEW-1")) + text)
    assert_bad_input(import_file(fleet, path), where(path, 2), "object")
    fleet.assert_unchanged()


def test_not_json_at_all(fleet: Fleet) -> None:
    path = fleet.write("inventory.xml", "<inventory>\n  <device id='x'/>\n</inventory>\n")
    assert_bad_input(import_file(fleet, path), where(path), "malformed JSON")
    fleet.assert_unchanged()


def test_non_utf8_bytes_in_json_lines(fleet: Fleet) -> None:
    raw = json.dumps(checkin("NEW-2", **{"apps.0.name": "TikTok\u00e9"}), ensure_ascii=False).encode("utf-8")
    assert "\u00e9".encode() in raw
    raw = raw.replace("\u00e9".encode(), b"\xff\xfe")
    path = fleet.write("latin.jsonl", jsonl(checkin("NEW-1")).encode() + raw + b"\n")
    assert_bad_input(import_file(fleet, path), where(path, 2), "UTF-8")
    fleet.assert_unchanged()


def test_non_utf8_bytes_in_a_single_document(fleet: Fleet) -> None:
    text = json.dumps(checkin(**{"device.model": "Pixel\u00e9"}), indent=2, ensure_ascii=False)
    assert "\u00e9".encode() in text.encode("utf-8")
    raw = text.encode("utf-8").replace("\u00e9".encode(), b"\xe9")  # Latin-1, not UTF-8
    path = fleet.write("latin.json", raw)
    expected = next(i for i, ln in enumerate(text.splitlines(), 1) if '"model"' in ln)
    assert_bad_input(import_file(fleet, path), where(path, expected), "UTF-8")
    fleet.assert_unchanged()


def test_deeply_nested_json(fleet: Fleet) -> None:
    doc = json.dumps(checkin())
    nested = doc.replace('"model": "Pixel 3"', '"model": ' + "[" * 50_000 + "]" * 50_000)
    path = fleet.write("nested.jsonl", nested + "\n")
    assert_bad_input(import_file(fleet, path), where(path, 1))
    fleet.assert_unchanged()


# -- types, values, required fields ------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"device.platform": 5}, "device.platform"),
        ({"device.id": None}, "device.id"),
        ({"device.id": 12345}, "device.id"),
        ({"device.owner": ["jane.doe@example.com"]}, "device.owner"),
        ({"device.eas_device_ids": "EASNEW1"}, "device.eas_device_ids"),
        ({"device.eas_device_ids": [1, 2]}, "device.eas_device_ids[0]"),
        ({"device.mail_access": "yes"}, "device.mail_access"),
        ({"device.mail_access": 1}, "device.mail_access"),
        ({"device": ["NEW-PHONE-1"]}, "device"),
        ({"observed_at": 1594479600}, "observed_at"),
        ({"apps": "TikTok"}, "apps"),
        ({"apps": [["com.zhiliaoapp.musically"]]}, "apps[0]"),
        ({"apps.1.version": 16.5}, "apps[1].version"),
        ({"apps.0.id": True}, "apps[0].id"),
        ({"source": 7}, "source"),
    ],
    ids=lambda v: "-".join(f"{k}={v!r}" for k, v in v.items()) if isinstance(v, dict) else v,
)
def test_wrong_type(fleet: Fleet, change: dict[str, Any], field: str) -> None:
    path = fleet.write("types.jsonl", jsonl(checkin("NEW-1"), checkin("NEW-2", **change)))
    assert_bad_input(import_file(fleet, path), where(path, 2), f"field {field}:")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"device.platform": "symbian"}, "device.platform"),
        ({"device.platform": "iOS"}, "device.platform"),
        ({"device.ownership": "stolen"}, "device.ownership"),
        ({"device.inventory_scope": "partial"}, "device.inventory_scope"),
        ({"source": "Agent X"}, "source"),
        ({"source": ""}, "source"),
        ({"device.id": ""}, "device.id"),
        ({"observed_at": "yesterday"}, "observed_at"),
        ({"observed_at": "2020-13-45T25:61:00Z"}, "observed_at"),
        ({"observed_at": "0001-01-01T00:00:00+14:00"}, "observed_at"),
        ({"observed_at": "9999-12-31T23:59:59-14:00"}, "observed_at"),
        ({"apps.0.signing_sha256": "not-a-digest"}, "apps[0].signing_sha256"),
        ({"apps.1": {"version": "1.0"}}, "apps[1]"),
        ({"apps.1": {"id": None, "name": ""}}, "apps[1]"),
        ({"apps.1": {"id": ""}}, "apps[1].id"),
    ],
    ids=lambda v: "-".join(f"{k}={v!r}" for k, v in v.items()) if isinstance(v, dict) else v,
)
def test_bad_value(fleet: Fleet, change: dict[str, Any], field: str) -> None:
    path = fleet.write("values.jsonl", jsonl(checkin("NEW-1"), checkin("NEW-2", **change)))
    assert_bad_input(import_file(fleet, path), where(path, 2), f"field {field}:")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("removed", "field", "named"),
    [
        ("device.owner", "device", "owner"),
        ("device.platform", "device", "platform"),
        ("device.id", "device", "id"),
        ("device", "", "device"),
        ("observed_at", "", "observed_at"),
        ("apps", "", "apps"),
    ],
)
def test_missing_required_field(fleet: Fleet, removed: str, field: str, named: str) -> None:
    path = fleet.write("missing.jsonl", jsonl(checkin("NEW-1"), checkin("NEW-2", **{removed: ...})))
    line = assert_bad_input(import_file(fleet, path), where(path, 2), "missing required field", named)
    if field:
        assert f"field {field}:" in line
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    "owner",
    [
        "jane",
        "jane@",
        "@example.com",
        "jane doe@example.com",
        "<jane@example.com>",
        "jane@example.com, bob@example.com",
        "jane@-example.com",
        "x" * 300 + "@example.com",
    ],
)
def test_owner_is_not_an_email(fleet: Fleet, owner: str) -> None:
    path = fleet.write("owner.jsonl", jsonl(checkin(**{"device.owner": owner})))
    assert_bad_input(import_file(fleet, path), where(path, 1), "field device.owner:")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("path_", "value"),
    [
        ("sauce", "tomato"),
        ("device.colour", "red"),
        ("apps.0.size", 1024),
        ("device.Owner", "x@example.com"),
    ],
)
def test_unknown_field(fleet: Fleet, path_: str, value: Any) -> None:
    path = fleet.write("unknown.jsonl", jsonl(checkin(**{path_: value})))
    assert_bad_input(import_file(fleet, path), where(path, 1), "unknown field", path_.rsplit(".", 1)[-1])
    fleet.assert_unchanged()


# -- duplicates ------------------------------------------------------------------------------


def test_duplicate_app_ids_in_one_check_in(fleet: Fleet) -> None:
    apps = [
        {"id": "com.example.notes"},
        {"id": "com.zhiliaoapp.musically"},
        {"id": "com.example.notes", "version": "2"},
    ]
    path = fleet.write("dup-apps.jsonl", jsonl(checkin("NEW-1"), checkin("NEW-2", apps=apps)))
    assert_bad_input(import_file(fleet, path), where(path, 2), "field apps[2].id:", "duplicate")
    fleet.assert_unchanged()


def test_duplicate_app_names_without_ids(fleet: Fleet) -> None:
    apps = [{"name": "TikTok"}, {"name": "TikTok"}]
    path = fleet.write("dup-names.jsonl", jsonl(checkin(apps=apps)))
    assert_bad_input(import_file(fleet, path), where(path, 1), "field apps[1].name:", "duplicate")
    fleet.assert_unchanged()


def test_duplicate_activesync_ids(fleet: Fleet) -> None:
    path = fleet.write("dup-eas.jsonl", jsonl(checkin(**{"device.eas_device_ids": ["EAS1", "EAS2", "EAS1"]})))
    assert_bad_input(import_file(fleet, path), where(path, 1), "field device.eas_device_ids", "duplicate")
    fleet.assert_unchanged()


# -- hostile strings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"device.model": "</td><td>"}, "device.model", "markup"),
        ({"device.id": "PHONE\u00001"}, "device.id", "control character"),
        ({"device.id": "PHONE\n1"}, "device.id", "control character"),
        ({"device.os_version": "13.5\u001b[31m"}, "device.os_version", "control character"),
        (
            {"device.eas_device_ids": ["EAS\u2066X"]},
            "device.eas_device_ids[0]",
            "control character",
        ),
        ({"apps.0.name": "x" * 10_240}, "apps[0].name", "length"),
        ({"device.id": "D" * 10_240}, "device.id", "length"),
        ({"device.model": "\u00e9" * 10_240}, "device.model", "length"),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, dict) else v,
)
def test_hostile_string(fleet: Fleet, change: dict[str, Any], field: str, problem: str) -> None:
    path = fleet.write("hostile.jsonl", jsonl(checkin("NEW-1"), checkin("NEW-2", **change)))
    assert_bad_input(import_file(fleet, path), where(path, 2), f"field {field}:", problem)
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("app", "kept"),
    [
        (
            {"name": "</> HTML Editor", "version": "1.0<img src=x onerror=alert(1)>"},
            ("\u2039/\u203a HTML Editor", "1.0\u2039img src=x onerror=alert(1)\u203a"),
        ),
        ({"name": "<script>alert(1)</script>"}, ("\u2039script\u203aalert(1)\u2039/script\u203a", "16.5.0")),
        ({"name": "\u202ekoTkiT", "version": "16.5\x1b[31m"}, ("\ufffdkoTkiT", "16.5\ufffd[31m")),
    ],
    ids=["markup", "script", "control"],
)
def test_an_app_s_hostile_name_is_kept_made_safe(fleet: Fleet, app: dict[str, str], kept: tuple[str, str]) -> None:
    """An app's name and version are chosen by its maker or the user, not the admin: one
    hostile name must not cost the device its inventory (nor let a user evade by naming
    an app). The app is kept, its name made visible and harmless."""
    changes = {f"apps.0.{k}": v for k, v in app.items()}
    path = fleet.write("hostile-app.jsonl", jsonl(checkin("NEW-1", **changes)))
    result = import_file(fleet, path)
    assert result.code == 0, result.err
    shown = json.loads(fleet.run("device", "show", "NEW-1", "--json").out)
    (evidence,) = [e for e in shown["policies"]["tiktok-mail"]["evidence"] if e.get("app")]
    assert (evidence["name"], evidence["version"]) == kept
    assert shown["policies"]["tiktok-mail"]["present"] == ["com.zhiliaoapp.musically"]


@pytest.mark.parametrize(
    ("app_id", "kept"),
    [
        ("com.zhiliaoapp\u200b.musically", "com.zhiliaoapp\ufffd.musically"),  # zero-width space
        ("com.zhiliaoapp.musically\u180e", "com.zhiliaoapp.musically\ufffd"),  # Mongolian vowel separator
        ("com.zhiliaoapp\u2800.musically", "com.zhiliaoapp\ufffd.musically"),  # braille pattern blank
        ("com.zhiliaoapp.musically\u0085<b", "com.zhiliaoapp.musically\ufffd\u2039b"),
    ],
    ids=["zwsp", "mvs", "braille", "control-markup"],
)
def test_an_app_id_with_an_invisible_character_is_kept_visibly_different(fleet: Fleet, app_id: str, kept: str) -> None:
    """An id that looks like TikTok's but is not stays an app of its own, shown so that
    it no longer looks like TikTok's: it matches nothing, and costs the device nothing."""
    path = fleet.write("hostile-id.jsonl", jsonl(checkin("NEW-1", **{"apps.0.id": app_id})))
    result = import_file(fleet, path, "--keep-full-inventory")
    assert result.code == 0, result.err
    with sqlite3.connect(fleet.db) as db:
        ids = {r[0] for r in db.execute("SELECT app_key FROM observations WHERE family = ''")}
    assert kept in ids
    shown = json.loads(fleet.run("device", "show", "NEW-1", "--json").out)
    assert shown["policies"]["tiktok-mail"]["state"] == "compliant"


def test_harmless_angle_bracket_is_not_markup(fleet: Fleet) -> None:
    """The hostile-string check must not refuse plain text: "<3" is not markup."""
    path = fleet.write("heart.jsonl", jsonl(checkin(**{"apps.1.name": "Notes <3 & more"})))
    assert import_file(fleet, path).code == 0
    assert fleet.devices() == 3


def test_hostile_file_name(fleet: Fleet) -> None:
    path = fleet.write("evil\n\u202ename\x1b[2J.jsonl", jsonl(checkin(**{"device.platform": "symbian"})))
    line = assert_bad_input(import_file(fleet, path), "device.platform")
    assert "evil" in line and "name" in line
    fleet.assert_unchanged()


# -- sizes -------------------------------------------------------------------------------------


def test_too_many_apps(fleet: Fleet) -> None:
    apps = [{"id": f"com.example.app{i}"} for i in range(6)]
    path = fleet.write("many.jsonl", jsonl(checkin("NEW-1"), checkin("NEW-2", apps=apps)))
    assert_bad_input(import_file(fleet, path, env={"APPBAN_MAX_APPS": "5"}), where(path, 2), "field apps")
    fleet.assert_unchanged()


def test_line_over_the_size_limit(fleet: Fleet) -> None:
    big = checkin("NEW-2", apps=[{"id": f"com.example.app{i}", "name": "x" * 100} for i in range(50)])
    path = fleet.write("over.jsonl", jsonl(checkin("NEW-1"), big, checkin("NEW-3")))
    result = import_file(fleet, path, env={"APPBAN_MAX_CHECKIN_BYTES": "2000"})
    assert_bad_input(result, where(path, 2), "larger than 2000 bytes")
    fleet.assert_unchanged()


def _write_single_line(path: Path, size: int) -> None:
    """One JSON object ``size`` bytes long, on one line: a device with an enormous model."""
    head = b'{"device":{"id":"HUGE","platform":"ios","owner":"jane.doe@example.com","model":"'
    tail = b'"},"observed_at":"2020-07-11T15:00:00Z","apps":[]}\n'
    chunk = b"A" * (1 << 20)
    with open(path, "wb") as f:
        f.write(head)
        left = size - len(head) - len(tail)
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
        f.write(tail)


def test_a_100_mb_line_is_refused_without_reading_it_all(fleet: Fleet) -> None:
    path = fleet.tmp / "huge-line.jsonl"
    _write_single_line(path, 100 * 1024 * 1024)
    started = time.monotonic()
    result = import_file(fleet, path)
    elapsed = time.monotonic() - started
    assert_bad_input(result, where(path, 1), "larger than")
    assert elapsed < 5, f"took {elapsed:.1f}s: the line was read whole"
    fleet.assert_unchanged()


def test_a_100_mb_line_after_good_lines(fleet: Fleet) -> None:
    path = fleet.tmp / "huge-third-line.jsonl"
    _write_single_line(path, 100 * 1024 * 1024)
    data = path.read_bytes()
    path.write_bytes(jsonl(checkin("NEW-1"), checkin("NEW-2")).encode() + data)
    del data
    assert_bad_input(import_file(fleet, path), where(path, 3), "larger than")
    fleet.assert_unchanged()


def _fat_checkin(i: int, apps: int) -> bytes:
    """A valid check-in of about ``apps`` * 330 bytes: many apps no catalog knows."""
    filler = "n" * 280
    doc = checkin(f"FAT-{i:05d}", apps=[{"id": f"com.example.a{j:05d}", "name": filler} for j in range(apps)])
    doc["apps"].append({"id": "com.zhiliaoapp.musically", "name": "TikTok"})
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def test_a_100_mb_file_whose_last_line_is_bad_writes_nothing(fleet: Fleet) -> None:
    path = fleet.tmp / "huge.jsonl"
    lines = 0
    with open(path, "wb") as f:
        while f.tell() < 100 * 1024 * 1024:
            lines += 1
            f.write(_fat_checkin(lines, 9_000))
        lines += 1
        f.write(json.dumps(checkin("LAST", **{"device.owner": "not an email"})).encode() + b"\n")
    assert path.stat().st_size >= 100 * 1024 * 1024
    assert_bad_input(import_file(fleet, path), where(path, lines), "field device.owner:")
    fleet.assert_unchanged()


def test_several_files_the_bad_one_is_named_and_nothing_of_it_written(fleet: Fleet) -> None:
    good = fleet.write("a-good.jsonl", jsonl(checkin("GOOD-1")))
    bad = fleet.write("b-bad.jsonl", jsonl(checkin("BAD-1"), checkin("BAD-2", **{"device.platform": "beos"})))
    assert_bad_input(import_file(fleet, good, str(bad)), where(bad, 2), "device.platform")
    assert count(fleet.db, "devices", "source_id LIKE 'BAD-%'") == 0
    # One transaction for the whole command: the good file is not half-imported either.
    fleet.assert_unchanged()


# -- a crash mid-import -----------------------------------------------------------------------


def _position_in(pid: int, path: Path) -> int | None:
    """How far process ``pid`` has read into ``path`` (Linux /proc); None if it cannot be seen."""
    folder = Path(f"/proc/{pid}/fd")
    if not folder.is_dir():
        return None
    try:
        for fd in folder.iterdir():
            try:
                if os.readlink(fd) != str(path):
                    continue
                for row in Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text().splitlines():
                    if row.startswith("pos:"):
                        return int(row.split()[1])
            except OSError:
                continue
    except OSError:
        return None
    return 0  # not open yet


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_midway_through_a_big_import_leaves_nothing(fleet: Fleet) -> None:
    path = fleet.tmp / "big.jsonl"
    total = 100_000
    template = json.dumps(checkin("KILL-{n:06d}", **{"device.eas_device_ids": ["EASKILL{n:06d}"]}))
    template = template.replace("{", "{{").replace("}", "}}").replace("{{n:06d}}", "{n:06d}")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(template.format(n=n) + "\n" for n in range(total))
    size = path.stat().st_size
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appban",
            "--db",
            str(fleet.db),
            "--now",
            NOW,
            "import",
            "appban",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("APPBAN_")},
    )
    try:
        # Kill once the importer is a fifth of the way through the file (or, where
        # /proc cannot say, after a while).
        started = time.monotonic()
        position: int | None = None
        while proc.poll() is None and time.monotonic() - started < 60:
            position = _position_in(proc.pid, path)
            if position is None and time.monotonic() - started > 2.5:
                break
            if position is not None and position > size // 5:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the import finished before it could be killed: use a bigger file"
        assert position is None or position < size, position
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert count(fleet.db, "devices", "source_id LIKE 'KILL-%'") == 0
    fleet.assert_unchanged()
    verify = run_process("--db", str(fleet.db), "--json", "audit", "verify")
    assert verify.code == 0, verify.err
    assert json.loads(verify.out)["ok"] is True
    # The database is usable afterwards: no lock, no half-written state.
    small = fleet.write("after.jsonl", jsonl(checkin("AFTER-1")))
    assert fleet.run("import", "appban", str(small)).code == 0
    assert fleet.devices() == 3


# -- errors found without another library's wording ---------------------------------------


@pytest.mark.parametrize(
    ("doc", "line", "field", "problem"),
    [
        ('{"device": {"id": "X", "platform": "symbian", "owner": "a@example.com"}}', 1, "device.platform", "symbian"),
        ('{\n  "device": {\n    "id": 7\n  }\n}', 3, "device.id", "expected text"),
        ('{\n  "apps": [\n    {"id": "a"},\n    {"id": "b", "size": 1}\n  ]\n}', 4, "apps[1].size", "unknown field"),
        ('{\n  "source": "agent",\n  "observed_at": ', 3, "observed_at", "malformed JSON"),
        ('{"device": {}, "device": {}}', 1, "device", "twice"),
    ],
    ids=["literal", "type", "unknown", "truncated", "twice"],
)
def test_errors_do_not_depend_on_the_decoders_wording(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, doc: str, line: int, field: str, problem: str
) -> None:
    """Line, field and reason come from appban's own reading of the bytes: a decoder
    whose messages say nothing (as a new release may word them) changes no answer."""
    import msgspec

    from appban.inventory import checkin

    class Mute:
        def decode(self, raw: bytes) -> object:
            try:
                return msgspec.json.decode(raw, type=checkin.CheckinBody)
            except msgspec.ValidationError:
                raise msgspec.ValidationError("MUTE") from None
            except msgspec.DecodeError:
                raise msgspec.DecodeError("MUTE") from None

    monkeypatch.setattr(checkin, "_decoder", Mute())
    path = fleet.write("mute.json", doc)
    line_text = assert_bad_input(import_file(fleet, path), where(path, line), f"field {field}:", problem)
    assert "MUTE" not in line_text
    fleet.assert_unchanged()


def test_messages_are_appbans_own(fleet: Fleet) -> None:
    """No decoder wording (msgspec says `Expected ...`, `Object contains ...`, `$.`)."""
    cases = [
        {"device.platform": "symbian"},
        {"device.id": 12345},
        {"device.colour": "red"},
        {"device.owner": ...},
        {"apps.0.signing_sha256": "xyz"},
        {"source": "Agent X"},
    ]
    for i, change in enumerate(cases):
        path = fleet.write(f"own-{i}.jsonl", jsonl(checkin(**change)))
        line = assert_bad_input(import_file(fleet, path), where(path, 1))
        for wording in ("Expected `", "Object ", "$.", "`"):
            assert wording not in line, (wording, line)
    fleet.assert_unchanged()


# -- a field given twice ------------------------------------------------------------------


DEVICE_TWICE = '"device": {"id": "TWICE", "platform": "android", "owner": "jane.doe@example.com"'
REST = '"observed_at": "2020-07-11T15:00:00Z", "apps": [{"id": "com.zhiliaoapp.musically"}]'


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (DEVICE_TWICE + ', "owner": "bob.roe@example.com"}, ' + REST, "device.owner"),
        (DEVICE_TWICE + ', "owner" : "bob.roe@example.com"}, ' + REST, "device.owner"),
        (DEVICE_TWICE + ', "owner"\t\r :"bob.roe@example.com"}, ' + REST, "device.owner"),
        (DEVICE_TWICE + ', "\\u006fwner": "bob.roe@example.com"}, ' + REST, "device.owner"),
        (DEVICE_TWICE + ', "ow\\u006eer": "jane.doe@example.com"}, ' + REST, "device.owner"),
        (DEVICE_TWICE + "}, " + REST + ', "apps": []', "apps"),
        (DEVICE_TWICE + '}, "source": "agent", ' + REST + ', "source": "agent"', "source"),
        (DEVICE_TWICE + "}, " + REST.replace('musically"}', 'musically", "id": "com.example.notes"}'), "apps[0].id"),
        (
            DEVICE_TWICE + ', "model": "a\\": \\"b", "model": "c"}, ' + REST,
            "device.model",
        ),
    ],
    ids=[
        "plain",
        "space-before-colon",
        "tab-before-colon",
        "escaped",
        "escaped-same-value",
        "top",
        "same-value",
        "app",
        "escaped-quote-in-value",
    ],
)
def test_a_field_given_twice(fleet: Fleet, body: str, field: str) -> None:
    """JSON parsers keep the last of two equal keys silently; appban refuses both."""
    path = fleet.write("twice.jsonl", jsonl(checkin("NEW-1")) + "{" + body + "}\n")
    assert_bad_input(import_file(fleet, path), where(path, 2), f"field {field}:", "twice")
    fleet.assert_unchanged()


def test_a_field_given_twice_in_a_pretty_printed_document_names_the_second(fleet: Fleet) -> None:
    text = json.dumps(checkin(), indent=2)
    text = text.replace('"model": "Pixel 3"', '"model": "Pixel 3",\n    "model"\n    : "Pixel 4"')
    path = fleet.write("twice.json", text)
    lines = text.splitlines()
    first = next(i for i, ln in enumerate(lines, 1) if '"model"' in ln)
    assert_bad_input(import_file(fleet, path), where(path, first + 1), "field device.model:", f"first on line {first}")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    "change",
    [
        {"apps.1.name": 'Notes": "x'},  # escaped quotes and a colon inside a value
        {"apps.1.name": "Notes: the app"},  # a colon in an app's name
        {"apps.1.version": None, "apps.0.version": None},  # explicit nulls
        {"device.model": "a:b:c", "observed_at": "2020-07-11T17:00:00+02:00"},
        {"device.id": "PHONE\u00e9:1", "apps.1.name": "Not\u00e9s \u263a"},
        {"source": "agent", "device.ownership": "unknown", "device.inventory_scope": "full"},
    ],
    ids=["escaped-quotes", "colon-in-name", "nulls", "colons", "non-ascii", "defaults-spelled-out"],
)
def test_what_looks_like_a_repeated_field_is_not_refused(fleet: Fleet, change: dict[str, Any]) -> None:
    path = fleet.write("tricky.jsonl", jsonl(checkin(**change)))
    result = import_file(fleet, path)
    assert result.code == 0, result.err
    assert fleet.devices() == 3


# -- one device twice in one file ------------------------------------------------------------


def test_the_same_snapshot_twice_with_other_apps_is_refused(fleet: Fleet) -> None:
    first = checkin("TWIN-1")
    second = checkin("TWIN-1", apps=[{"id": "com.example.notes", "name": "Notes"}])
    path = fleet.write("twins.jsonl", jsonl(checkin("NEW-0"), first, checkin("NEW-2"), second))
    assert_bad_input(import_file(fleet, path), where(path, 4), "field apps:", "line 2")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"device.owner": "bob.roe@example.com"}, "device.owner"),
        ({"device.eas_device_ids": ["EASOTHER"]}, "device.eas_device_ids"),
        ({"device.platform": "ios"}, "device.platform"),
        ({"apps.0.version": "17.0"}, "apps"),
    ],
)
def test_the_same_snapshot_twice_saying_other_things_is_refused(
    fleet: Fleet, change: dict[str, Any], field: str
) -> None:
    path = fleet.write("twins.jsonl", jsonl(checkin("TWIN-1"), checkin("TWIN-1", **change)))
    assert_bad_input(import_file(fleet, path), where(path, 2), f"field {field}:", "line 1")
    fleet.assert_unchanged()


def test_the_identical_snapshot_twice_is_harmless(fleet: Fleet) -> None:
    again = checkin("TWIN-1")
    again["apps"] = list(reversed(again["apps"]))  # the same apps, in another order
    again["device"] = dict(reversed(list(again["device"].items())))
    path = fleet.write("twins.jsonl", jsonl(checkin("TWIN-1"), again))
    result = import_file(fleet, path, "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert (doc["new"], doc["unchanged"]) == (1, 1)


def test_the_same_device_at_other_times_is_not_a_conflict(fleet: Fleet) -> None:
    later = checkin("TWIN-1", observed_at="2020-07-11T16:00:00Z", apps=[])
    other = checkin("TWIN-1", source="mdm", **{"device.eas_device_ids": ["EASTWIN1MDM"]})
    path = fleet.write("times.jsonl", jsonl(checkin("TWIN-1"), later, other))
    result = import_file(fleet, path)
    assert result.code == 0, result.err
    assert fleet.devices() == 4  # agent:TWIN-1 and mdm:TWIN-1 (no identifier in common: two phones)


# -- empty files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "\n\n  \n", "\ufeff"], ids=["empty", "blank-lines", "bom-only"])
def test_a_file_with_no_check_ins_is_refused(fleet: Fleet, content: str) -> None:
    path = fleet.write("empty.jsonl", content)
    result = import_file(fleet, path)
    assert_bad_input(result, where(path))
    fleet.assert_unchanged()


def test_an_empty_file_among_good_ones_writes_nothing(fleet: Fleet) -> None:
    good = fleet.write("good.jsonl", jsonl(checkin("GOOD-1")))
    empty = fleet.write("empty.jsonl", "")
    assert_bad_input(import_file(fleet, good, str(empty)), where(empty), "no check-ins")
    fleet.assert_unchanged()


# -- invisible characters in identifiers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"device.id": "NEW\u200bPHONE"}, "device.id"),  # zero-width space
        ({"device.id": "NEW-PHONE\u2060"}, "device.id"),  # word joiner
        ({"device.id": "\ufeffNEW-PHONE"}, "device.id"),  # byte-order mark
        ({"device.id": "NEW\u00adPHONE"}, "device.id"),  # soft hyphen
        ({"device.id": "NEW\u00a0PHONE"}, "device.id"),  # no-break space
        ({"device.id": "NEW-PHONE\ufe0f"}, "device.id"),  # variation selector
        ({"device.eas_device_ids": ["EAS\u200bNEW1"]}, "device.eas_device_ids[0]"),
        ({"device.eas_device_ids": ["EASNEW1", "EAS\u200dNEW2"]}, "device.eas_device_ids[1]"),
        ({"device.eas_device_ids": ["EAS NEW1"]}, "device.eas_device_ids[0]"),
        ({"device.eas_device_ids": ["EAS\u00c9NEW1"]}, "device.eas_device_ids[0]"),
        ({"device.owner": "jane\u180e.doe@example.com"}, "device.owner"),
    ],
    ids=lambda v: repr(v)[:48] if isinstance(v, dict) else v,
)
def test_an_invisible_character_in_an_identifier_is_refused(fleet: Fleet, change: dict[str, Any], field: str) -> None:
    path = fleet.write("invisible.jsonl", jsonl(checkin("NEW-1"), checkin("NEW-2", **change)))
    assert_bad_input(import_file(fleet, path), where(path, 2), f"field {field}:")
    fleet.assert_unchanged()


def test_names_and_versions_may_hold_emoji_sequences(fleet: Fleet) -> None:
    """A zero-width joiner is part of many emoji: names keep it, identifiers may not."""
    name = "Dev \U0001f469\u200d\U0001f4bb Notes \u2764\ufe0f"
    path = fleet.write("emoji.jsonl", jsonl(checkin(**{"apps.1.name": name, "apps.1.version": "1.0 \u2728"})))
    result = import_file(fleet, path)
    assert result.code == 0, result.err
    assert fleet.devices() == 3


# -- check-ins from the future ---------------------------------------------------------------


def test_a_check_in_from_the_future_is_refused(fleet: Fleet) -> None:
    path = fleet.write("future.jsonl", jsonl(checkin("NEW-1"), checkin("NEW-2", observed_at="2099-01-01T00:00:00Z")))
    assert_bad_input(import_file(fleet, path), where(path, 2), "field observed_at:", "future", "APPBAN_CLOCK_SKEW")
    fleet.assert_unchanged()


@pytest.mark.parametrize(
    ("skew", "ahead", "accepted"),
    [
        (None, "2020-07-12T12:04:00Z", True),  # the default: 5 minutes
        (None, "2020-07-12T12:06:00Z", False),
        ("1h", "2020-07-12T12:59:00Z", True),
        ("1h", "2020-07-12T13:01:00Z", False),
        ("0s", "2020-07-12T12:00:00Z", True),
        ("0s", "2020-07-12T12:00:01Z", False),
        ("30s", "2020-07-12T14:00:20+02:00", True),  # 12:00:20 UTC
    ],
)
def test_the_clock_skew_allowed(fleet: Fleet, skew: str | None, ahead: str, accepted: bool) -> None:
    env = {"APPBAN_CLOCK_SKEW": skew} if skew is not None else None
    path = fleet.write("ahead.jsonl", jsonl(checkin(observed_at=ahead)))
    result = import_file(fleet, path, env=env)
    if accepted:
        assert result.code == 0, result.err
        assert fleet.devices() == 3
    else:
        assert_bad_input(result, where(path, 1), "field observed_at:")
        fleet.assert_unchanged()


def test_a_bad_clock_skew_setting_names_the_variable(fleet: Fleet) -> None:
    path = fleet.write("ok.jsonl", jsonl(checkin()))
    assert_bad_input(import_file(fleet, path, env={"APPBAN_CLOCK_SKEW": "soon"}), "APPBAN_CLOCK_SKEW")
    fleet.assert_unchanged()


def test_a_future_check_in_cannot_freeze_a_device(fleet: Fleet) -> None:
    """The probe: a clean check-in dated 2099 made a blocked phone allowed, and every
    later real check-in was ignored as no newer than it."""
    jane = {"id": "JANE-IPHONE", "platform": "ios", "ownership": "personal", "owner": "jane.doe@example.com"}
    jane["eas_device_ids"] = ["EASJANE1"]

    def decide() -> str:
        result = fleet.run("gate", "decide", "--eas-device-id", "EASJANE1", "--user", "jane.doe@example.com", "--json")
        assert result.code == 0, result.err
        return json.loads(result.out)["decision"]

    assert decide() == "deny"
    clean = {"device": jane, "observed_at": "2099-01-01T00:00:00Z", "apps": []}
    path = fleet.write("clean-from-the-future.json", json.dumps(clean))
    assert_bad_input(import_file(fleet, path), where(path, 1), "field observed_at:")
    assert decide() == "deny"
    real = {"device": jane, "observed_at": "2020-07-12T11:00:00Z", "apps": [{"id": "com.example.notes"}]}
    assert import_file(fleet, fleet.write("real.json", json.dumps(real))).code == 0
    assert decide() == "allow"


# -- times need an offset --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("observed_at", "problem"),
    [("2020-07-11T15:00:00", "offset"), ("2020-07-11 15:00", "offset"), ("2020-07-11", "date")],
)
def test_a_time_without_an_offset_is_refused(fleet: Fleet, observed_at: str, problem: str) -> None:
    path = fleet.write("naive.jsonl", jsonl(checkin("NEW-1"), checkin("NEW-2", observed_at=observed_at)))
    assert_bad_input(import_file(fleet, path), where(path, 2), "field observed_at:", problem)
    fleet.assert_unchanged()


def test_nesting_deeper_than_any_check_in_is_refused_where_it_starts(fleet: Fleet) -> None:
    """Two million brackets (4 MB, under the size limit): refused at the field that holds
    them, after reading 64 levels, not after reading them all."""
    doc = json.dumps(checkin(), indent=2)
    nested = doc.replace('"model": "Pixel 3"', '"model": ' + "[" * 2_000_000 + "]" * 2_000_000)
    path = fleet.write("deep.json", nested)
    expected = next(i for i, ln in enumerate(nested.splitlines(), 1) if '"model"' in ln)
    assert_bad_input(import_file(fleet, path), where(path, expected), "field device.model", "nested more than 64")
    fleet.assert_unchanged()


# -- e-mail addresses are lower-cased in ASCII only ---------------------------------------------------


def _owner(fleet: Fleet, device: str) -> str:
    shown = fleet.run("device", "show", device, "--json")
    assert shown.code == 0, shown.err
    owner: str = json.loads(shown.out)["owner"]
    return owner


@pytest.mark.parametrize(
    ("owner", "stored"),
    [
        (" Jane.Doe@EXAMPLE.com ", "jane.doe@example.com"),
        # The Kelvin sign looks like K, and str.lower() makes it an ASCII k: that would
        # give this device to kate.doe@example.com, whom the gate also knows as such.
        ("\u212aate.doe@example.com", "\u212aate.doe@example.com"),
        ("J\u00dcRGEN@example.com", "j\u00dcrgen@example.com"),  # only A-Z, as the gate compares names
        ("\u0130nci@example.com", "\u0130nci@example.com"),  # str.lower() would add a combining dot
    ],
    ids=["ascii", "kelvin", "umlaut", "dotted-I"],
)
def test_an_owner_is_lower_cased_in_ascii_only(fleet: Fleet, owner: str, stored: str) -> None:
    path = fleet.write("owner.jsonl", jsonl(checkin(**{"device.owner": owner})))
    result = import_file(fleet, path)
    assert result.code == 0, result.err
    assert _owner(fleet, "NEW-PHONE-1") == stored


@pytest.mark.parametrize("blank", ["\u2800", "\u3164", "\u115f", "\u1160", "\uffa0", "\U0001d159"])
@pytest.mark.parametrize("field", ["device.id", "device.owner"])
def test_a_blank_looking_character_in_an_identifier_is_refused(fleet: Fleet, blank: str, field: str) -> None:
    """U+2800 BRAILLE PATTERN BLANK and its kind print nothing: "NEW\u2800PHONE" would
    look like "NEW PHONE", and an owner with one like another person."""
    change = {
        "device.id": {"device.id": f"NEW{blank}PHONE"},
        "device.owner": {"device.owner": f"jane.doe{blank}@example.com"},
    }[field]
    path = fleet.write("blank.jsonl", jsonl(checkin("NEW-1"), checkin("NEW-2", **change)))
    line = assert_bad_input(import_file(fleet, path), where(path, 2), f"field {field}:")
    assert f"U+{ord(blank):04X}" in line, line
    fleet.assert_unchanged()


# -- bytes that are not UTF-8, by their offset in the file ---------------------------------------------


def test_non_utf8_bytes_in_json_lines_are_named_by_their_offset_in_the_file(fleet: Fleet) -> None:
    good = jsonl(checkin("NEW-1")).encode()
    raw = json.dumps(checkin("NEW-2", **{"apps.0.name": "TikTok\u00e9"}), ensure_ascii=False).encode()
    raw = raw.replace("\u00e9".encode(), b"\xff")
    path = fleet.write("offset.jsonl", good + raw + b"\n")
    offset = len(good) + raw.index(b"\xff")
    line = assert_bad_input(import_file(fleet, path), where(path, 2), "field apps[0].name:")
    assert line.endswith(f"not UTF-8 at byte offset {offset}"), line
    assert path.read_bytes()[offset : offset + 1] == b"\xff"
    fleet.assert_unchanged()


def test_non_utf8_bytes_in_a_single_document_are_named_by_their_offset_in_the_file(fleet: Fleet) -> None:
    text = json.dumps(checkin(**{"device.model": "Pixel\u00e9 \u2728"}), indent=2, ensure_ascii=False)
    raw = text.encode("utf-8").replace("\u00e9".encode(), b"\xe9")
    path = fleet.write("offset.json", raw)
    offset = raw.index(b"\xe9")
    line = assert_bad_input(import_file(fleet, path), "field device.model:")
    assert line.endswith(f"not UTF-8 at byte offset {offset}"), line
    fleet.assert_unchanged()
