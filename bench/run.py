"""appban's benchmarks, one command: ``python bench/run.py`` (see --help).

Each figure sits beside a baseline measured in the same run on the same machine:
machines here are shared and noisy, so ratios and medians are what to compare.
Results are written to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).parent))
import _fleet  # noqa: E402

from appban.clock import parse_time  # noqa: E402
from appban.inventory.appban_format import AppbanFormat  # noqa: E402
from appban.inventory.base import ReadOptions  # noqa: E402
from appban.inventory.checkin import App, Checkin, Device  # noqa: E402
from appban.inventory.ingest import Ingestor  # noqa: E402
from appban.policy.lifecycle import apply  # noqa: E402
from appban.workspace import Workspace  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "examples" / "tiktok-mail.yaml"
T0 = "2020-07-10T12:00:00Z"


def workspace(db: str, now: str = T0) -> Workspace:
    ws = Workspace(db, parse_time(now), create=True)
    apply(ws, str(POLICY), dry_run=False)
    return ws


def bench_ingest(n: int, tmp: Path) -> dict[str, float]:
    """Check-ins/s through the real reader and ingest, beside a plain executemany."""
    first = tmp / "first.jsonl"
    second = tmp / "second.jsonl"
    first.write_bytes(_fleet.jsonl(n, 1, observed_at="2020-07-10T15:00:00Z"))
    # Newer than the first, and not ahead of the clock below (a check-in from the future is refused).
    second.write_bytes(_fleet.jsonl(n, 2, observed_at="2020-07-10T16:00:00Z"))

    ws = workspace(str(tmp / "ingest.db"))
    ws.now = parse_time("2020-07-10T16:30:00Z")
    rates = {}
    for label, path in (("new devices", first), ("newer snapshots", second)):
        ingestor = Ingestor(ws.store, ws.evaluator, keep_full=False)
        start = time.perf_counter()
        with ws.writing():
            for _line, c in AppbanFormat().read(str(path), ReadOptions(now=0, max_bytes=4 << 20)):
                ingestor.ingest(c, ws.now)
        rates[label] = n / (time.perf_counter() - start)
    ws.close()

    # Baseline: decode the same lines and executemany every (device, app) row into a
    # plain table in one transaction, the least any store of these check-ins does.
    db = sqlite3.connect(str(tmp / "baseline.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE obs (device TEXT, app TEXT, name TEXT, version TEXT, observed TEXT)")
    decode = msgspec.json.decode
    start = time.perf_counter()
    db.execute("BEGIN")
    with open(first, "rb") as f:
        for raw in f:
            c = decode(raw)
            device, at = c["device"]["id"], c["observed_at"]
            db.executemany(
                "INSERT INTO obs VALUES (?, ?, ?, ?, ?)",
                [(device, a["id"], a["name"], a["version"], at) for a in c["apps"]],
            )
    db.execute("COMMIT")
    rates["baseline executemany"] = n / (time.perf_counter() - start)
    db.close()
    return rates


def _fleet_checkins(n: int, seed: int) -> list[Checkin]:
    """n check-ins of 150 apps each; the 149 non-catalog apps share one list to save memory."""
    rng = random.Random(seed)
    common = [App(id=a, name=a.rsplit(".", 1)[1], version="1.0") for a in _fleet.POOL[:150]]
    with_tiktok = common[:149] + [App(id="com.zhiliaoapp.musically", name="TikTok", version="16.5.0")]
    ids_common = [a.id for a in common]
    ids_tiktok = [a.id for a in with_tiktok]
    out = []
    observed = parse_time("2020-07-10T15:00:00Z")
    for i in range(n):
        tiktok = rng.random() < 0.10
        device = Device(
            id=f"device-{i:08d}",
            platform="android" if i % 2 else "ios",
            owner=f"user{i}@example.com",
            ownership="personal" if i % 3 else "corporate",
            eas_device_ids=[f"EAS{i:012d}"],
        )
        apps, ids = (with_tiktok, ids_tiktok) if tiktok else (common, ids_common)
        out.append(Checkin("agent", device, observed, apps, ids))
    return out


def bench_evaluation(n: int, tmp: Path, trials: int) -> dict[str, float]:
    db = str(tmp / "fleet.db")
    ws = Workspace(db, parse_time("2020-07-10T16:30:00Z"), create=True)
    ingestor = Ingestor(ws.store, ws.evaluator, keep_full=False)
    start = time.perf_counter()
    chunk = 100_000
    for base in range(0, n, chunk):
        batch = _fleet_checkins(min(chunk, n - base), seed=base)
        for c in batch:
            k = base + int(c.device.id[7:])
            c.device.id, c.device.owner = f"device-{k:08d}", f"user{k}@example.com"
            c.device.eas_device_ids = [f"EAS{k:012d}"]
        with ws.writing():
            for c in batch:
                ingestor.ingest(c, ws.now)
    setup = time.perf_counter() - start
    out: dict[str, float] = {"setup: ingest of the fleet, s": setup}

    # First evaluation: the policy applied to an existing fleet writes every state,
    # its history and its audit entry.
    start = time.perf_counter()
    apply(ws, str(POLICY), dry_run=False)
    out["apply policy (first evaluation, writes all states), s"] = time.perf_counter() - start

    policy = ws.evaluator.policies[0]
    times = []
    for _ in range(3):
        start = time.perf_counter()
        with ws.writing():
            ws.evaluator.evaluate_policy(policy, ws.now, "evaluate")
        times.append(time.perf_counter() - start)
    out["full re-evaluation (evaluate --full), median s"] = statistics.median(times)

    base_times = []
    for _ in range(3):
        start = time.perf_counter()
        rows = ws.store.db.execute(
            "SELECT d.id, d.platform, d.ownership, d.owner, d.eas_ids, d.inventory_scope, "
            "d.observed_at, p.groups, s.state, o.app_key FROM devices d "
            "LEFT JOIN people p ON p.email = d.owner "
            "LEFT JOIN states s ON s.device_id = d.id AND s.policy_id = 'tiktok-mail' "
            "LEFT JOIN observations o ON o.device_id = d.id AND o.family = 'tiktok' AND o.gone_at IS NULL"
        ).fetchall()
        base_times.append(time.perf_counter() - start)
        del rows
    out["baseline: the equivalent SQL join fetched, median s"] = statistics.median(base_times)

    # Incremental: one check-in (a device removes or installs TikTok), its own
    # transaction, commit included; and the re-evaluation part alone.
    rng = random.Random(7)
    whole, evaluation = [], []
    for t in range(trials):
        i = rng.randrange(n)
        ws.now += 1_000_000
        c = _fleet_checkins(1, seed=t)[0]
        c.device.id, c.device.owner = f"device-{i:08d}", f"user{i}@example.com"
        c.device.eas_device_ids = [f"EAS{i:012d}"]
        c.observed_at = ws.now
        start = time.perf_counter()
        with ws.writing():
            ingestor.ingest(c, ws.now)
        whole.append(time.perf_counter() - start)
        device = ws.store.get_device_by_key("agent", c.device.id)
        start = time.perf_counter()
        with ws.writing():
            ws.evaluator.evaluate_device(device, ws.now, "inventory")
        evaluation.append(time.perf_counter() - start)
    out["one check-in, committed, median ms"] = statistics.median(whole) * 1000
    out["one check-in, committed, p99 ms"] = sorted(whole)[int(len(whole) * 0.99) - 1] * 1000
    out["re-evaluation of one device, median ms"] = statistics.median(evaluation) * 1000
    ws.close()
    return out


def bench_demo(employees: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "appban",
                "--db",
                os.path.join(tmp, "demo.db"),
                "demo",
                "--employees",
                str(employees),
                "--json",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - start


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.machine()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkins", type=int, default=20_000, help="check-ins for the ingest benchmark")
    parser.add_argument("--devices", type=int, default=1_000_000, help="fleet size for the evaluation benchmark")
    parser.add_argument("--trials", type=int, default=1000, help="single check-ins for the incremental benchmark")
    parser.add_argument("--demo-employees", type=int, default=500_000, help="0 to skip the demo timing")
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"ingest: {args.checkins} check-ins of 150 apps ...", file=sys.stderr)
        results["ingest, check-ins/s"] = bench_ingest(args.checkins, Path(tmp))
        print(f"evaluation: {args.devices} devices ...", file=sys.stderr)
        results[f"evaluation, {args.devices:,} devices x 150 apps"] = bench_evaluation(
            args.devices, Path(tmp), args.trials
        )
    if args.demo_employees:
        print(f"demo: {args.demo_employees} employees ...", file=sys.stderr)
        results["demo"] = {
            f"appban demo --employees {args.demo_employees}, s": bench_demo(args.demo_employees),
            "appban demo (default 5000), s": bench_demo(5000),
        }
    write_report(Path(args.out), results, args)


def write_report(path: Path, results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    lines = [
        "# Performance",
        "",
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d')} by `python bench/run.py` on {machine()}.",
        "The machine is shared and noisy: compare ratios to the baseline measured in the same run.",
        "",
    ]
    for section, figures in results.items():
        lines += [f"## {section}", "", "| measure | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:,.2f} |" for k, v in figures.items()]
        lines.append("")
    ingest = results.get("ingest, check-ins/s", {})
    if ingest:
        base = ingest["baseline executemany"]
        lines.append(
            f"Ingest ratio to the plain executemany baseline: new devices {ingest['new devices'] / base:.2f}, "
            f"newer snapshots {ingest['newer snapshots'] / base:.2f}. Goal: at least 5,000 check-ins/s."
        )
        lines.append("")
    for section, figures in results.items():
        if section.startswith("evaluation"):
            full = figures["full re-evaluation (evaluate --full), median s"]
            join = figures["baseline: the equivalent SQL join fetched, median s"]
            lines.append(
                f"Full re-evaluation is {full / join:.2f} x the time of fetching the equivalent join. "
                "Goals: full evaluation of 1,000,000 devices at most 5 s; "
                "one check-in's re-evaluation at most 1 ms median."
            )
            lines.append("")
    # bench/gate.py writes its own section ("# Gate ..."): keep it as it is.
    previous = path.read_text("utf-8") if path.exists() else ""
    gate = previous[previous.index("\n# Gate") :] if "\n# Gate" in previous else ""
    path.write_text("\n".join(lines) + gate)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
