"""A device's observations brought up to a new snapshot: what ingest and linking share."""

from __future__ import annotations

from typing import Any

from appban.clock import Micros
from appban.store.records import Observation


def write_observations(
    store: Any, device_id: int, kept: list[Observation], existing: dict[str, Observation], at: Micros
) -> list[Observation]:
    """A device's observations brought to ``kept`` (the apps present at ``at``): new or
    changed rows written whole, unchanged ones seen again, missing ones gone."""
    upserts: list[Observation] = []
    refreshed: list[tuple[str, str | None, Micros]] = []
    for obs in kept:
        before = existing.get(obs.app_key)
        if (
            before is not None
            and before.gone_at is None
            and (before.family, before.name, before.signing_sha256, before.match_kind)
            == (obs.family, obs.name, obs.signing_sha256, obs.match_kind)
        ):
            obs.first_seen = before.first_seen
            refreshed.append((obs.app_key, obs.version, at))
        else:
            if before is not None and before.gone_at is None:
                obs.first_seen = before.first_seen
            upserts.append(obs)
    kept_keys = {o.app_key for o in kept}
    gone = [k for k, o in existing.items() if o.gone_at is None and k not in kept_keys]
    if upserts or refreshed or gone:
        store.write_observations(device_id, upserts, refreshed, gone, at)
    return kept
