"""Synthetic check-ins for the benchmarks: 150 apps each, TikTok on about 10%."""

from __future__ import annotations

import random

import msgspec

POOL = [f"com.example.vendor{i // 10}.app{i}" for i in range(2000)]
TIKTOK = ("com.zhiliaoapp.musically", "com.ss.android.ugc.trill", "com.zhiliaoapp.musically.go")


def checkin(i: int, rng: random.Random, *, observed_at: str, tiktok: bool | None = None, apps: int = 150) -> dict:
    platform = "android" if i % 2 else "ios"
    chosen = rng.sample(POOL, apps)
    items = [{"id": a, "name": a.rsplit(".", 1)[1].title(), "version": "1.0"} for a in chosen]
    if tiktok if tiktok is not None else rng.random() < 0.10:
        items[rng.randrange(apps)] = {
            "id": rng.choice(TIKTOK),
            "name": "TikTok",
            "version": "16.5.0",
        }
    return {
        "source": "agent",
        "device": {
            "id": f"device-{i:08d}",
            "platform": platform,
            "ownership": "personal" if i % 3 else "corporate",
            "owner": f"user{i}@example.com",
            "eas_device_ids": [f"EAS{i:012d}"],
        },
        "observed_at": observed_at,
        "apps": items,
    }


def jsonl(n: int, seed: int, *, observed_at: str = "2020-07-10T15:00:00Z", start: int = 0) -> bytes:
    rng = random.Random(seed)
    enc = msgspec.json.Encoder()
    return b"\n".join(enc.encode(checkin(start + i, rng, observed_at=observed_at)) for i in range(n)) + b"\n"
