"""The vendor formats' import benchmark, one command: ``python bench/formats.py [--quick]``.

For each format, a file of the synthetic fleet (bench/_vendor_fleet.py; 150 apps a
device, TikTok on 10%) is imported by ``appban import FORMAT`` as a subprocess into a
fresh database (so the time includes the interpreter's start, the whole-file
validation pass and the short write transactions), and beside it, in the same run, a
bare streaming parse of the same file with the fastest suitable library: msgspec per
line (JSON Lines of pages, osquery lines, webhook events, with base64 and plistlib for
the property lists), defusedxml's iterparse for Jamf's XML, the standard library's csv
for Exchange. Then peak RSS (ru_maxrss of the import process) at three file sizes, and
the time to link and evaluate a fleet reported by three sources, beside the same fleet
reported by one.

Figures replace the "# Vendor formats" section of docs/performance.md; other sections stay.
"""

from __future__ import annotations

import argparse
import base64
import csv
import os
import platform
import plistlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import msgspec
from defusedxml.ElementTree import iterparse

sys.path.insert(0, str(Path(__file__).parent))
import _fleet  # noqa: E402
import _vendor_fleet as vf  # noqa: E402

from appban.clock import parse_time  # noqa: E402
from appban.inventory.checkin import App, Checkin, Device, Ownership, Platform  # noqa: E402
from appban.inventory.ingest import Ingestor  # noqa: E402
from appban.policy.lifecycle import apply  # noqa: E402
from appban.workspace import Workspace  # noqa: E402
from gate import replace_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "examples" / "tiktok-mail.yaml"
NOW = "2020-07-12T12:00:00Z"
MB = 1 << 20
Writer = Callable[[BinaryIO, Iterator[vf.FleetDevice], int], int]


# -- bare parses: what reading the file costs at the least -------------------------------------


def bare_pages(key: str) -> Callable[[str], int]:
    def parse(path: str) -> int:
        decode, n = msgspec.json.decode, 0
        with open(path, "rb") as f:
            for line in f:
                n += len(decode(line)[key])
        return n

    return parse


def bare_lines(path: str) -> int:
    decode, n = msgspec.json.decode, 0
    with open(path, "rb") as f:
        for line in f:
            decode(line)
            n += 1
    return n


def bare_webhook(path: str) -> int:
    decode, n = msgspec.json.decode, 0
    with open(path, "rb") as f:
        for line in f:
            answer = plistlib.loads(base64.b64decode(decode(line)["acknowledge_event"]["raw_payload"]))
            n += "InstalledApplicationList" in answer
    return n


def bare_xml(path: str) -> int:
    n = 0
    with open(path, "rb") as f:
        for _event, element in iterparse(f, events=("end",), forbid_dtd=True):
            if element.tag == "mobile_device":
                n += 1
                element.clear()
    return n


def bare_csv(path: str) -> int:
    with open(path, encoding="utf-8", newline="") as f:
        f.readline()  # #TYPE
        rows = csv.reader(f)
        next(rows)
        return sum(1 for _ in rows)


@dataclass(frozen=True)
class Case:
    label: str
    fmt: str
    platforms: tuple[str, ...]
    json: bool  # 100,000 devices (JSON) or 10,000 (XML, plists, CSV)
    write: Writer
    bare: Callable[[str], int]
    reader: str  # what the bare parse is


PHONES = ("ios", "android")
CASES = (
    Case("intune", "intune", PHONES, True, lambda f, d, n: vf.write_intune(f, d), bare_pages("value"), "msgspec"),
    Case("jamf (Classic XML)", "jamf", ("ios",), False, vf.write_jamf_xml, bare_xml, "defusedxml iterparse"),
    Case("jamf (Pro API JSON)", "jamf", ("ios",), True, vf.write_jamf_json, bare_pages("results"), "msgspec"),
    Case("workspace-one", "workspace-one", PHONES, True, vf.write_workspace_one, bare_pages("Devices"), "msgspec"),
    Case(
        "google-directory",
        "google-directory",
        ("android",),
        True,
        lambda f, d, n: vf.write_google_directory(f, d),
        bare_pages("mobiledevices"),
        "msgspec",
    ),
    Case(
        "android-management",
        "android-management",
        ("android",),
        True,
        lambda f, d, n: vf.write_android_management(f, d),
        bare_pages("devices"),
        "msgspec",
    ),
    Case(
        "apple-mdm (webhook)",
        "apple-mdm",
        ("ios",),
        False,
        lambda f, d, n: vf.write_apple_mdm(f, d),
        bare_webhook,
        "msgspec + base64 + plistlib",
    ),
    Case(
        "osquery", "osquery", ("windows", "macos"), True, lambda f, d, n: vf.write_osquery(f, d), bare_lines, "msgspec"
    ),
    Case("exchange (Export-Csv)", "exchange", PHONES, False, lambda f, d, n: vf.write_exchange(f, d), bare_csv, "csv"),
)


# -- the import, as a user runs it ------------------------------------------------------------


def appban(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "appban", *args], check=True, capture_output=True)


def timed_import(fmt: str, path: Path, db: Path) -> tuple[float, int]:
    """(seconds, check-ins) of ``appban import FMT PATH`` into a new database."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    appban("--db", str(db), "init")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "appban", "--db", str(db), "--now", NOW, "import", fmt, str(path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"appban import {fmt} {path} failed: {err.decode(errors='replace')[:500]}")
    return elapsed, msgspec.json.decode(out)["checkins"]


def peak_rss_import(fmt: str, path: Path, db: Path) -> tuple[float, int]:
    """(seconds, peak RSS bytes) of one import, measured with wait4 on that child alone."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    appban("--db", str(db), "init")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "appban", "--db", str(db), "--now", NOW, "import", fmt, str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"appban import {fmt} {path} failed ({proc.returncode})")
    return time.perf_counter() - start, usage.ru_maxrss * 1024


def write_file(case: Case, path: Path, n: int, seed: int = 1) -> int:
    with open(path, "wb", buffering=4 * MB) as f:
        written = case.write(f, vf.fleet(n, seed, platforms=case.platforms), n)
    return written


def bench_formats(json_devices: int, other_devices: int, tmp: Path) -> list[list[str]]:
    rows = []
    for case in CASES:
        n = json_devices if case.json else other_devices
        path = tmp / "fleet.data"
        write_file(case, path, n)
        size = path.stat().st_size
        expected = n if case.fmt != "exchange" else sum(1 for d in vf.fleet(n, 1, platforms=case.platforms) if d.eas_id)
        bare_times = []
        for _ in range(3):
            start = time.perf_counter()
            assert case.bare(str(path)) == expected, case.label
            bare_times.append(time.perf_counter() - start)
        # Three imports where a file is small enough to afford them, else one.
        runs = 3 if size < 300 * MB else 1
        import_times = []
        for _ in range(runs):
            seconds, checkins = timed_import(case.fmt, path, tmp / "import.db")
            assert checkins == expected, (case.label, checkins, expected)
            import_times.append(seconds)
        bare, imported = statistics.median(bare_times), statistics.median(import_times)
        rows.append(
            [
                case.label,
                f"{expected:,}",
                f"{size / MB:,.0f}",
                f"{expected / imported:,.0f}",
                f"{size / MB / imported:,.1f}",
                f"{expected / bare:,.0f}",
                f"{size / MB / bare:,.1f}",
                f"{imported / bare:.2f}",
                f"{runs}",
                case.reader,
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
        path.unlink()
    return rows


def bench_memory(targets: list[int], tmp: Path) -> list[list[str]]:
    """Peak RSS of an import at each file size, for Graph pages and osquery lines."""
    rows = []
    for case in (CASES[0], CASES[7]):
        sample = tmp / "sample.data"
        write_file(case, sample, 200)
        per_device = sample.stat().st_size / 200
        sample.unlink()
        for target in targets:
            n = int(target / per_device)
            path = tmp / "big.data"
            write_file(case, path, n, seed=3)
            seconds, rss = peak_rss_import(case.fmt, path, tmp / "rss.db")
            size = path.stat().st_size
            rows.append(
                [
                    case.label,
                    f"{size / MB:,.0f}",
                    f"{n:,}",
                    f"{rss / MB:,.1f}",
                    f"{seconds:,.1f}",
                    f"{n / seconds:,.0f}",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
            path.unlink()
    return rows


# -- linking: one fleet reported by three sources, beside the same fleet from one ---------------


def _fleet_checkins(base: int, n: int, *, sources: int) -> Iterator[Checkin]:
    """Devices base .. base + n - 1 (phones two in three, laptops the rest), as
    ``sources`` 3: an Intune-like MDM record with apps (and no ActiveSync id), an
    Exchange record (ActiveSync DeviceId, IMEI, mail access) for phones, an osquery
    record (host, serial) for laptops; ``sources`` 1: one record carrying the union."""
    rng = random.Random(base)
    common = [App(id=a, name=a.rsplit(".", 1)[1], version="1.0") for a in _fleet.POOL[:150]]
    tiktok = common[:149] + [App(id="com.zhiliaoapp.musically", name="TikTok", version="16.5.0")]
    ids = {id(common): [a.id for a in common], id(tiktok): [a.id for a in tiktok]}
    observed = parse_time("2020-07-10T15:00:00Z")
    for i in range(base, base + n):
        laptop = i % 3 == 2
        plat: Platform = "macos" if laptop else ("android" if i % 2 else "ios")
        owner, serial, imei, eas = f"user{i}@example.com", f"C{i:010d}", f"35{i:013d}", f"EAS{i:020d}"
        apps = tiktok if rng.random() < 0.10 else common
        ownership: Ownership = "personal" if i % 3 == 1 else "corporate"
        if sources == 1:
            device = Device(
                id=f"device-{i:08d}",
                platform=plat,
                owner=owner,
                ownership=ownership,
                eas_device_ids=[eas],
                mail_access=True,
            )
            yield Checkin("agent", device, observed, apps, ids[id(apps)])
            continue
        mdm = Device(
            id=f"mdm-{i:08d}",
            platform=plat,
            owner=owner,
            ownership=ownership,
            inventory_scope="full",
            identifiers=[("serial", serial)] + ([] if laptop else [("imei", imei)]),
            eas_device_ids=[eas] if laptop else [],
            mail_access=True if laptop else None,
        )
        yield Checkin("intune", mdm, observed, apps, ids[id(apps)])
        if laptop:
            host = Device(
                id=f"host-{i:08d}/apps",
                platform=plat,
                owner=None,
                identifiers=[("host", f"host-{i:08d}"), ("serial", serial)],
            )
            yield Checkin("osquery", host, observed, apps, ids[id(apps)])
        else:
            mail = Device(
                id=eas,
                platform=plat,
                owner=None,
                inventory_scope="none",
                mail_access=True,
                eas_device_ids=[eas],
                identifiers=[("imei", imei)],
            )
            yield Checkin("exchange", mail, observed, [], [])


def bench_linking(n: int, tmp: Path) -> list[list[str]]:
    rows = []
    results: dict[int, dict[str, float]] = {}
    for sources in (1, 3):
        db = tmp / f"link{sources}.db"
        ws = Workspace(str(db), parse_time("2020-07-10T16:30:00Z"), create=True)
        apply(ws, str(POLICY), dry_run=False)
        ingestor = Ingestor(ws.store, ws.evaluator, keep_full=False)
        records = 0
        start = time.perf_counter()
        chunk = 20_000
        for base in range(0, n, chunk):
            with ws.writing():
                for c in _fleet_checkins(base, min(chunk, n - base), sources=sources):
                    ingestor.ingest(c, ws.now)
                    records += 1
        ingest = time.perf_counter() - start
        db_conn = ws.store.db  # type: ignore[attr-defined]  # the SQLite store's connection
        devices = db_conn.execute("SELECT count(*) FROM devices").fetchone()[0]
        policy = ws.evaluator.policies[0]
        times = []
        for _ in range(3):
            start = time.perf_counter()
            with ws.writing():
                ws.evaluator.evaluate_policy(policy, ws.now, "evaluate")
            times.append(time.perf_counter() - start)
        states = dict(
            db_conn.execute("SELECT state, count(*) FROM states WHERE policy_id = 'tiktok-mail' GROUP BY state")
        )
        ws.close()
        results[sources] = {"ingest": ingest, "evaluate": statistics.median(times)}
        rows.append(
            [
                "three sources (MDM + Exchange or osquery)" if sources == 3 else "one source (the union)",
                f"{records:,}",
                f"{devices:,}",
                f"{ingest:,.1f}",
                f"{records / ingest:,.0f}",
                f"{statistics.median(times):,.2f}",
                ", ".join(f"{k} {v:,}" for k, v in sorted(states.items())),
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    ratio = results[3]["ingest"] / results[1]["ingest"]
    rows.append(["ratio three sources / one source, ingest and link", "", "", f"{ratio:.2f}", "", "", ""])
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Small files and fleets: a check that it runs.")
    parser.add_argument("--json-devices", type=int, default=None, help="Devices in a JSON file (100,000).")
    parser.add_argument("--other-devices", type=int, default=None, help="Devices in another file (10,000).")
    parser.add_argument("--rss-mb", default=None, help="File sizes for peak RSS, MB, comma-separated (200,1024,2048).")
    parser.add_argument("--link-devices", type=int, default=None, help="Devices in the linking fleet (1,000,000).")
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    parser.add_argument("--no-write", action="store_true", help="Print the figures only.")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="appban-formats-") as name:
        tmp = Path(name)
        quick = args.quick
        json_n = args.json_devices or (2_000 if quick else 100_000)
        other_n = args.other_devices or (300 if quick else 10_000)
        rss = args.rss_mb or ("20,40,80" if quick else "200,1024,2048")
        link_n = args.link_devices or (5_000 if quick else 1_000_000)
        formats = bench_formats(json_n, other_n, tmp)
        memory = bench_memory([int(mb) * MB for mb in rss.split(",")], tmp)
        linking = bench_linking(link_n, tmp)
    total = time.perf_counter() - started
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    sqlite = __import__("sqlite3").sqlite_version
    text = (
        f"# Vendor formats (`python bench/formats.py{' ' if sys.argv[1:] else ''}{' '.join(sys.argv[1:])}`, {date})\n\n"
        f"On {os.cpu_count()} cores, Python {platform.python_version()}, SQLite {sqlite}, "
        f"{platform.system()} {platform.machine()}; the whole run took {total / 60:,.1f} min. "
        "The machine is shared and noisy: compare the ratios, measured in the same run.\n\n"
        "Goals: import at most 2 x the bare parse for every format; JSON formats at least "
        "5,000 devices/s; memory flat in file size.\n\n"
        "## import, 150 apps a device\n\n"
        "`appban import FORMAT FILE` as a subprocess into a fresh database (interpreter start, "
        "the validation pass over the whole file and the writes included), beside a bare "
        "streaming parse of the same file in this process. Medians: 3 bare parses; 3 imports "
        "for a file under 300 MB, else 1. JSON files hold pages one a line (JSON Lines of "
        "pages), 100 devices a page.\n\n"
        + table(
            [
                "format",
                "devices",
                "MB",
                "import devices/s",
                "import MB/s",
                "bare devices/s",
                "bare MB/s",
                "import / bare",
                "imports",
                "bare parse",
            ],
            formats,
        )
        + "\n## peak RSS of an import, by file size\n\n"
        "`ru_maxrss` of the `appban import` process (wait4), 150 apps a device.\n\n"
        + table(["format", "file MB", "devices", "peak RSS MB", "s", "devices/s"], memory)
        + f"\n## linking: {link_n:,} devices reported by three sources\n\n"
        "Check-ins generated in this process and ingested with the importer's own ingest "
        "(not files): phones by an Intune-like MDM (apps, serial, IMEI, no ActiveSync id) "
        "and Exchange (ActiveSync DeviceId, IMEI, mail), laptops by the MDM and osquery "
        "(host, serial); the records of one device link as they arrive. Beside it the same "
        "fleet as one source, one check-in a device carrying the union. The policy is "
        "active during ingest (each device evaluated as it changes); full re-evaluation "
        "is the median of 3.\n\n"
        + table(
            ["fleet", "records", "devices", "ingest + link s", "records/s", "full re-evaluation s", "states"], linking
        )
    )
    print(text)
    if not args.no_write:
        replace_section(Path(args.out), "# Vendor formats (", text)


if __name__ == "__main__":
    main()
