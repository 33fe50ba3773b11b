"""A synthetic company: people in org units and time zones, their phones, tablets and
laptops, what is installed on them, and how each owner reacts to the memo.

Everything is drawn from one ``random.Random``, so a seed gives the same company
and the same story. Shares are rough, public-survey-shaped guesses, not data:
phones mostly iOS in a US employer, a third corporate, a sixth of personal phones
enrolled with app protection only (the source sees managed apps, nothing else),
TikTok on roughly one phone in eight, more in marketing and retail.
"""

from __future__ import annotations

import random
import uuid
from bisect import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

from appban.clock import Micros
from appban.inventory.checkin import App, Checkin, Device, Platform
from appban.sim._apps import AppPools, build_pools
from appban.sim.timeline import DAY, HOUR, SECOND, Timeline
from appban.store.records import Person

DOMAIN = "example.com"
SOCIAL_MEDIA = "social-media"  # runs the company's own TikTok account: the exemption
SECURITY_RESEARCH = "security-research"  # studies the app: out of the policy's scope

T = TypeVar("T")


@dataclass(frozen=True)
class OrgUnit:
    name: str
    weight: float
    zones: tuple[tuple[str, float], ...]
    tiktok: float  # how much likelier than average a member's phone has TikTok
    group: str


ORG_UNITS = (
    OrgUnit(
        "Engineering",
        0.22,
        (
            ("America/Los_Angeles", 5),
            ("America/New_York", 2),
            ("Europe/Dublin", 1),
            ("Asia/Kolkata", 1.5),
            ("Asia/Singapore", 0.5),
        ),
        0.8,
        "engineering",
    ),
    OrgUnit(
        "Sales",
        0.15,
        (
            ("America/New_York", 4),
            ("America/Chicago", 2),
            ("Europe/London", 2),
            ("Asia/Singapore", 1),
            ("Australia/Sydney", 1),
        ),
        1.1,
        "sales",
    ),
    OrgUnit(
        "Marketing",
        0.06,
        (("America/Los_Angeles", 6), ("America/New_York", 3), ("Europe/London", 1)),
        1.8,
        "marketing",
    ),
    OrgUnit(
        "Customer Support",
        0.14,
        (
            ("America/Chicago", 4),
            ("America/Denver", 2),
            ("Asia/Manila", 2.5),
            ("Europe/Dublin", 1.5),
        ),
        1.3,
        "support",
    ),
    OrgUnit(
        "Retail",
        0.14,
        (
            ("America/New_York", 3),
            ("America/Chicago", 3),
            ("America/Denver", 1),
            ("America/Los_Angeles", 3),
        ),
        1.5,
        "retail",
    ),
    OrgUnit(
        "Operations",
        0.10,
        (("America/Chicago", 5), ("America/Denver", 3), ("America/Phoenix", 2)),
        1.0,
        "operations",
    ),
    OrgUnit("Finance", 0.06, (("America/New_York", 8), ("Europe/London", 2)), 0.7, "finance"),
    OrgUnit("People", 0.05, (("America/Chicago", 6), ("America/Los_Angeles", 4)), 1.0, "people"),
    OrgUnit("Legal", 0.03, (("America/New_York", 1),), 0.5, "legal"),
    OrgUnit("Security", 0.03, (("America/Los_Angeles", 7), ("Europe/Dublin", 3)), 0.6, "security"),
    OrgUnit("Executive Office", 0.02, (("America/New_York", 1),), 0.4, "executives"),
)
MARKETING = ORG_UNITS[2]

_FIRST = (
    "james",
    "mary",
    "john",
    "patricia",
    "robert",
    "jennifer",
    "michael",
    "linda",
    "william",
    "elizabeth",
    "david",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "priya",
    "wei",
    "aisha",
    "mateo",
    "sofia",
    "liam",
    "olivia",
    "noah",
    "emma",
    "ava",
    "lucas",
    "mia",
    "ethan",
    "amara",
    "kenji",
    "yuki",
    "ananya",
    "rahul",
    "fatima",
    "omar",
    "chloe",
    "daniel",
    "grace",
    "samuel",
    "zoe",
    "arjun",
    "mei",
    "carlos",
    "lucia",
    "ivan",
    "elena",
    "hannah",
    "jacob",
    "nina",
)
_LAST = (
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "scott",
    "nguyen",
    "chen",
    "patel",
    "kim",
    "singh",
    "khan",
    "murphy",
    "obrien",
    "kowalski",
    "rossi",
    "muller",
    "tanaka",
    "silva",
    "reyes",
)

_MODELS: dict[str, tuple[tuple[str, str], ...]] = {
    "ios": (
        ("iPhone12,1", "13.5.1"),
        ("iPhone11,8", "13.5.1"),
        ("iPhone12,3", "13.5.1"),
        ("iPhone10,4", "13.4.1"),
        ("iPhone12,8", "13.5"),
        ("iPhone9,3", "12.4.7"),
    ),
    "ipados": (("iPad7,5", "13.5.1"), ("iPad8,1", "13.5.1"), ("iPad11,3", "13.4.1")),
    "android": (
        ("SM-G973U", "10"),
        ("SM-G981U", "10"),
        ("Pixel 4", "10"),
        ("Pixel 3a", "10"),
        ("SM-N975U", "10"),
        ("moto g(7)", "9"),
        ("ONEPLUS A6013", "10"),
    ),
    "macos": (
        ("MacBookPro16,1", "10.15.5"),
        ("MacBookAir9,1", "10.15.5"),
        ("MacBookPro15,2", "10.15.4"),
    ),
    "windows": (
        ("Latitude 7400", "10.0.18363"),
        ("ThinkPad T490", "10.0.18363"),
        ("Surface Laptop 3", "10.0.19041"),
    ),
}
_PHONES: tuple[Platform, Platform] = ("ios", "android")


@dataclass(slots=True)
class SimDevice:
    """One device and its story: what its source reports, and when."""

    source: str
    device: Device  # shared by all its check-ins: ingesting never changes it
    apps: list[App]  # what the source sees besides TikTok (a shared profile)
    tiktok: App | None  # the banned app, when the source can see it
    first_seen: Micros  # the inventory before the memo
    refresh_at: Micros | None = None  # the next regular inventory, None: never again
    removal_at: Micros | None = None  # the owner deletes TikTok; the agent reports it

    def checkin(self, at: Micros) -> Checkin:
        apps = self.apps
        if self.tiktok is not None and (self.removal_at is None or at < self.removal_at):
            apps = [*apps, self.tiktok]
        return Checkin(self.source, self.device, at, apps)


@dataclass
class Company:
    people: list[Person]
    devices: list[SimDevice]
    exempt_person: Person  # keeps TikTok for work, with an exemption
    attester: SimDevice  # a phone whose source cannot see TikTok; its owner attests


class _Draw(Generic[T]):
    """Weighted choices by bisecting cumulative weights: much cheaper than ``choices``."""

    def __init__(self, rng: random.Random, weighted: Iterable[tuple[T, float]]) -> None:
        pairs = list(weighted)
        self.rng = rng
        self.items = [item for item, _w in pairs]
        self.cum = list(accumulate(w for _i, w in pairs))

    def __call__(self) -> T:
        return self.items[bisect(self.cum, self.rng.random() * self.cum[-1])]


def build_company(employees: int, rng: random.Random, t: Timeline) -> Company:
    builder = _Builder(rng, t)
    people = builder.people(employees)
    devices: list[SimDevice] = []
    for i, (person, unit) in enumerate(people):
        devices.extend(builder.devices_of(person, unit, role=i))
    exempt, attester = people[0][0], devices[builder.attester_index]
    return Company([p for p, _u in people], devices, exempt, attester)


def _offset(zone: str) -> Micros:
    """The zone's UTC offset in the campaign's week (summer time where it applies)."""
    offset = ZoneInfo(zone).utcoffset(datetime(2020, 7, 12)) or timedelta(0)
    return int(offset.total_seconds()) * 1_000_000


class _Builder:
    def __init__(self, rng: random.Random, t: Timeline) -> None:
        self.rng = rng
        self.t = t
        self.pools: AppPools = build_pools(rng)
        self.units = _Draw(rng, ((u, u.weight) for u in ORG_UNITS))
        self.zones = {u.name: _Draw(rng, u.zones) for u in ORG_UNITS}
        self.offsets = {zone: _offset(zone) for u in ORG_UNITS for zone, _w in u.zones}
        self.variants = {
            platform: _Draw(rng, zip(apps, weights, strict=True))
            for platform, (apps, weights) in self.pools.tiktok.items()
        }
        self.taken: dict[str, int] = {}
        self.attester_index = 0
        self.count = 0

    # -- people --------------------------------------------------------------------

    def people(self, n: int) -> list[tuple[Person, OrgUnit]]:
        rng = self.rng
        out = []
        for i in range(n):
            unit = MARKETING if i == 0 else self.units()
            first, last = _pick(rng, _FIRST), _pick(rng, _LAST)
            groups = {unit.group}
            if rng.random() < 0.08:
                groups.add("managers")
            if i == 0 or (unit is MARKETING and rng.random() < 0.15):
                groups.add(SOCIAL_MEDIA)
            if unit.group == "security" and rng.random() < 0.25:
                groups.add(SECURITY_RESEARCH)
            name = f"{first.title()} {last.title()}"
            email = self._email(first, last)
            zone = self.zones[unit.name]()
            out.append((Person(email, name, unit.name, tuple(sorted(groups)), zone), unit))
        return out

    def _email(self, first: str, last: str) -> str:
        base = f"{first}.{last}"
        seen = self.taken.get(base, 0)
        self.taken[base] = seen + 1
        return f"{base}@{DOMAIN}" if seen == 0 else f"{base}{seen + 1}@{DOMAIN}"

    # -- devices -------------------------------------------------------------------

    def devices_of(self, person: Person, unit: OrgUnit, *, role: int) -> list[SimDevice]:
        """role 0: the social-media lead; role 1: the owner who will attest; else anyone."""
        rng = self.rng
        out: list[SimDevice] = []
        corporate = role == 0 or (role != 1 and rng.random() < 0.35)
        if role < 2 or rng.random() < 0.97:
            platform: Platform = "ios" if role < 2 or rng.random() < 0.56 else "android"
            out.append(self._phone(person, unit, platform, corporate, role=role))
        if role >= 2 and rng.random() < 0.07:
            out.append(self._phone(person, unit, _pick(rng, _PHONES), not corporate, role=role))
        if role >= 2 and rng.random() < 0.05:
            out.append(self._phone(person, unit, "ipados", rng.random() < 0.6, role=role))
        if rng.random() < 0.25:
            out.append(self._laptop(person, "macos" if rng.random() < 0.45 else "windows"))
        if role == 1:
            self.attester_index = self.count
        self.count += len(out)
        return out

    def _phone(self, person: Person, unit: OrgUnit, platform: Platform, corporate: bool, *, role: int) -> SimDevice:
        rng = self.rng
        # App protection without enrolment is how personal phones usually read mail.
        managed = role == 1 or (role != 0 and not corporate and rng.random() < 0.17)
        mail = role < 2 or rng.random() < (0.97 if platform == "ipados" else 0.9)
        model, os_version = _pick(rng, _MODELS[platform])
        if managed:
            source, apps = "intune", _pick(rng, self.pools.managed[platform])
        elif corporate:
            source = "android-management" if platform == "android" else "apple-mdm"
            apps = _pick(rng, self.pools.full[platform])
        else:
            source, apps = "agent", _pick(rng, self.pools.full[platform])
        device = Device(
            id=_device_id(rng, platform),
            platform=platform,
            owner=person.email,
            ownership="corporate" if corporate else "personal",
            model=model,
            os_version=os_version,
            eas_device_ids=[_eas_id(rng, platform)] if mail else [],
            inventory_scope="managed" if managed else "full",
        )
        dormant = role >= 2 and rng.random() < 0.02
        sim = SimDevice(source, device, apps, None, self._first_seen(dormant=dormant))
        share = (0.07 if corporate else 0.15) * unit.tiktok
        if not managed and (role == 0 or rng.random() < share):
            sim.tiktok = self.variants[platform]()
        self._plan(sim, person, role=role)
        return sim

    def _laptop(self, person: Person, platform: Platform) -> SimDevice:
        rng = self.rng
        model, os_version = _pick(rng, _MODELS[platform])
        if platform == "macos":
            source = "jamf"
            device_id = f"C02{rng.getrandbits(36):09X}"  # the shape of a Mac serial number
        else:
            source = "intune"
            device_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        # Outlook on the desktop reads mail, but laptops are outside the policy's platforms.
        device = Device(
            id=device_id,
            platform=platform,
            owner=person.email,
            ownership="corporate",
            model=model,
            os_version=os_version,
            inventory_scope="full",
            mail_access=True,
        )
        apps = _pick(rng, self.pools.full[platform])
        return SimDevice(source, device, apps, None, self._first_seen(dormant=False))

    def _first_seen(self, *, dormant: bool) -> Micros:
        # Everyone's regular inventory arrived in the day before the memo; a few phones
        # have not checked in for days and will age past max_inventory_age.
        ago = _between(self.rng, 2 * DAY, 4 * DAY) if dormant else _between(self.rng, 1, DAY)
        return _second(self.t.effective - ago)

    # -- behaviour -----------------------------------------------------------------

    def _plan(self, sim: SimDevice, person: Person, *, role: int) -> None:
        """When this device checks in again, and when its owner removes TikTok."""
        rng = self.rng
        if sim.first_seen < self.t.effective - DAY:
            return  # a dormant phone: nothing more is heard from it
        age = self.t.max_inventory_age
        sim.refresh_at = _second(sim.first_seen + _between(rng, age * 3 // 7, age * 13 // 14))
        told = bool(sim.device.eas_device_ids) and SECURITY_RESEARCH not in person.groups
        if sim.tiktok is not None and told and role != 0:
            removal = self._removal(self.offsets[person.timezone])
            sim.removal_at = None if removal is None else _second(removal)

    def _removal(self, offset: Micros) -> Micros | None:
        """Most remove it within a day or two, more after each reminder, some only once
        mail stops working, and about one in eight not at all."""
        rng, t = self.rng, self.t
        first, last = t.reminder_times()
        r = rng.random()
        if r < 0.40:
            at = t.effective + int(rng.expovariate(1 / (22 * HOUR)))
            if at >= first:
                at = _between(rng, t.effective, first)
            return _awake(rng, at, offset, first)
        if r < 0.60:
            return _awake(rng, _between(rng, first, last), offset, last)
        if r < 0.68:
            return _between(rng, last, t.deadline)
        if r < 0.88:
            late = t.deadline + int(rng.expovariate(1 / (20 * HOUR)))
            return _awake(rng, late, offset, t.deadline + 30 * DAY)
        return None


def _awake(rng: random.Random, at: Micros, offset: Micros, limit: Micros) -> Micros:
    """People delete apps when they are awake: a night-time removal moves to the morning,
    unless that would cross ``limit`` (night owls exist)."""
    local = at + offset
    hour = local % DAY // HOUR
    if 7 <= hour < 23:
        return at
    morning = local - local % DAY + 7 * HOUR + _between(rng, 0, 3 * HOUR) + (DAY if hour >= 23 else 0)
    moved = morning - offset
    return moved if moved < limit else at


def _pick(rng: random.Random, items: Sequence[T]) -> T:
    """``rng.choice`` at a fraction of the cost: half a million people draw millions."""
    return items[int(rng.random() * len(items))]


def _between(rng: random.Random, low: int, high: int) -> int:
    """``rng.randrange(low, high)``, the same way and for the same reason as ``_pick``."""
    return low + int(rng.random() * (high - low))


def _second(at: Micros) -> Micros:
    """Sources report whole seconds; so does the demo, which keeps its day ends exact."""
    return at - at % SECOND


def _device_id(rng: random.Random, platform: str) -> str:
    if platform in ("ios", "ipados"):
        # The shape of a modern UDID: chip id, then a 64-bit ECID.
        return f"0000{_pick(rng, ('8020', '8030', '8027', '8101'))}-{rng.getrandbits(64):016X}"
    return f"{rng.getrandbits(64):016x}"


def _eas_id(rng: random.Random, platform: str) -> str:
    if platform == "android":
        return f"androidc{_between(rng, 10**9, 10**10)}"
    # iOS Mail's ActiveSync DeviceId: 26 upper-case alphanumerics, like SPEC's example.
    return f"{rng.getrandbits(104):026X}"
