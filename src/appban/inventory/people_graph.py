"""People from Microsoft Graph: ``user`` pages, and one group's ``members`` pages.

Both are Graph collections (``{"@odata.context", "value": [...], "@odata.nextLink"}``,
one page or several concatenated, JSON Lines of pages, or a plain array), read
streaming by ``json_records``.

A user: e-mail from ``mail``, else ``userPrincipalName``; name ``displayName``; org
unit ``department`` (``officeLocation`` names a place, not a part of the company);
time zone ``mailboxSettings.timeZone`` where it was selected. Graph gives that zone
as an IANA name or as a Windows name ("Pacific Standard Time"); Windows names are
turned into IANA ones by CLDR's table (``windowsZones.xml``, territory 001), and a
Windows name outside it (a custom zone) is kept as UTC. Groups come from members
pages, a group at a time, since a user page does not list them.

Members of a group: only ``#microsoft.graph.user`` members count; groups, devices,
contacts and service principals in the list are skipped (membership is not
transitive in Graph, nor here).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from appban.errors import BadInput
from appban.inventory._vendor import child, json_records, mapping, text
from appban.inventory.people import _person
from appban.store.records import Person
from appban.text import normalise_email

_PAGING = ("@odata.context", "@odata.nextLink", "@odata.count", "@odata.deltaLink")
_USER = "microsoft.graph.user"


def read_graph_users(path: str, max_bytes: int) -> Iterator[tuple[int | None, Person]]:
    """Each Graph user of the file, as a person (no groups: see ``read_graph_members``).

    ``max_bytes`` is accepted for the people readers' common call; every field read
    is bounded on its own (e-mail 254, name and org unit 200, zone 64 characters).
    """
    seen: dict[str, str] = {}
    try:
        for at, record in json_records(path, list_keys=("value",), page_keys=_PAGING):
            user = mapping(record, at)
            person = _user(user, at)
            if person.email in seen:
                raise BadInput(f"duplicate person (also {seen[person.email]})", field=at)
            seen[person.email] = at
            yield None, person
    except BadInput as exc:
        raise exc.at(file=path) from None


def read_graph_members(path: str, max_bytes: int) -> Iterator[tuple[int | None, str]]:
    """The e-mail address of each user among a group's members, in file order."""
    try:
        for at, record in json_records(path, list_keys=("value",), page_keys=_PAGING):
            member = mapping(record, at)
            kind = member.get("@odata.type")
            if kind is not None and (not isinstance(kind, str) or kind.lstrip("#") != _USER):
                continue  # a nested group, a device, a contact: not a person
            email, key = _email(member, at)
            if email is None:
                raise BadInput("a user member without mail or userPrincipalName", field=at)
            yield None, normalise_email(email, f"{at}.{key}")
    except BadInput as exc:
        raise exc.at(file=path) from None


def _email(record: dict[str, Any], at: str) -> tuple[str | None, str]:
    key = "mail" if text(record, "mail", at) else "userPrincipalName"
    return text(record, key, at), key


def _user(user: dict[str, Any], at: str) -> Person:
    email, email_key = _email(user, at)
    if email is None:
        raise BadInput("a user without mail or userPrincipalName", field=at)
    settings = child(user, "mailboxSettings", at)
    zone = text(settings, "timeZone", f"{at}.mailboxSettings")
    fields = {
        "email": f"{at}.{email_key}",
        "name": f"{at}.displayName",
        "org_unit": f"{at}.department",
        "timezone": f"{at}.mailboxSettings.timeZone",
    }
    row = [email, text(user, "displayName", at) or "", text(user, "department", at) or "", "", iana_zone(zone)]
    try:
        return _person(row)
    except BadInput as exc:
        raise BadInput(exc.detail, field=fields.get(exc.field or "", exc.field)) from None


def iana_zone(zone: str | None) -> str:
    """An IANA zone for Graph's time zone: IANA names as they are, Windows names by CLDR's
    table, a Windows name it does not know (a custom zone) as UTC, none as UTC."""
    if zone is None or not zone.strip():
        return "UTC"
    zone = zone.strip()
    if "/" in zone or zone == "UTC":
        return zone
    if zone in WINDOWS_ZONES:
        return WINDOWS_ZONES[zone]
    if " " in zone or zone.startswith("UTC"):  # a Windows-style name not in the table
        return "UTC"
    return zone  # "GMT", "EST5EDT" ...: IANA names; checked by the person's rules


# CLDR windowsZones.xml, territory 001 (each Windows zone's main IANA zone), with the
# IANA names of today where CLDR keeps an old alias (Asia/Kolkata, Europe/Kyiv ...).
WINDOWS_ZONES = {
    "Dateline Standard Time": "Etc/GMT+12",
    "UTC-11": "Etc/GMT+11",
    "Aleutian Standard Time": "America/Adak",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Marquesas Standard Time": "Pacific/Marquesas",
    "Alaskan Standard Time": "America/Anchorage",
    "UTC-09": "Etc/GMT+9",
    "Pacific Standard Time (Mexico)": "America/Tijuana",
    "UTC-08": "Etc/GMT+8",
    "Pacific Standard Time": "America/Los_Angeles",
    "US Mountain Standard Time": "America/Phoenix",
    "Mountain Standard Time (Mexico)": "America/Mazatlan",
    "Mountain Standard Time": "America/Denver",
    "Yukon Standard Time": "America/Whitehorse",
    "Central America Standard Time": "America/Guatemala",
    "Central Standard Time": "America/Chicago",
    "Easter Island Standard Time": "Pacific/Easter",
    "Central Standard Time (Mexico)": "America/Mexico_City",
    "Canada Central Standard Time": "America/Regina",
    "SA Pacific Standard Time": "America/Bogota",
    "Eastern Standard Time (Mexico)": "America/Cancun",
    "Eastern Standard Time": "America/New_York",
    "Haiti Standard Time": "America/Port-au-Prince",
    "Cuba Standard Time": "America/Havana",
    "US Eastern Standard Time": "America/Indiana/Indianapolis",
    "Turks And Caicos Standard Time": "America/Grand_Turk",
    "Paraguay Standard Time": "America/Asuncion",
    "Atlantic Standard Time": "America/Halifax",
    "Venezuela Standard Time": "America/Caracas",
    "Central Brazilian Standard Time": "America/Cuiaba",
    "SA Western Standard Time": "America/La_Paz",
    "Pacific SA Standard Time": "America/Santiago",
    "Newfoundland Standard Time": "America/St_Johns",
    "Tocantins Standard Time": "America/Araguaina",
    "E. South America Standard Time": "America/Sao_Paulo",
    "SA Eastern Standard Time": "America/Cayenne",
    "Argentina Standard Time": "America/Argentina/Buenos_Aires",
    "Greenland Standard Time": "America/Nuuk",
    "Montevideo Standard Time": "America/Montevideo",
    "Magallanes Standard Time": "America/Punta_Arenas",
    "Saint Pierre Standard Time": "America/Miquelon",
    "Bahia Standard Time": "America/Bahia",
    "UTC-02": "Etc/GMT+2",
    "Azores Standard Time": "Atlantic/Azores",
    "Cape Verde Standard Time": "Atlantic/Cape_Verde",
    "UTC": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "Sao Tome Standard Time": "Africa/Sao_Tome",
    "Morocco Standard Time": "Africa/Casablanca",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Romance Standard Time": "Europe/Paris",
    "Central European Standard Time": "Europe/Warsaw",
    "W. Central Africa Standard Time": "Africa/Lagos",
    "Jordan Standard Time": "Asia/Amman",
    "GTB Standard Time": "Europe/Bucharest",
    "Middle East Standard Time": "Asia/Beirut",
    "Egypt Standard Time": "Africa/Cairo",
    "E. Europe Standard Time": "Europe/Chisinau",
    "Syria Standard Time": "Asia/Damascus",
    "West Bank Standard Time": "Asia/Hebron",
    "South Africa Standard Time": "Africa/Johannesburg",
    "FLE Standard Time": "Europe/Kyiv",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Sudan Standard Time": "Africa/Juba",
    "Kaliningrad Standard Time": "Europe/Kaliningrad",
    "Sudan Standard Time": "Africa/Khartoum",
    "Libya Standard Time": "Africa/Tripoli",
    "Namibia Standard Time": "Africa/Windhoek",
    "Arabic Standard Time": "Asia/Baghdad",
    "Turkey Standard Time": "Europe/Istanbul",
    "Arab Standard Time": "Asia/Riyadh",
    "Belarus Standard Time": "Europe/Minsk",
    "Russian Standard Time": "Europe/Moscow",
    "E. Africa Standard Time": "Africa/Nairobi",
    "Volgograd Standard Time": "Europe/Volgograd",
    "Iran Standard Time": "Asia/Tehran",
    "Arabian Standard Time": "Asia/Dubai",
    "Astrakhan Standard Time": "Europe/Astrakhan",
    "Azerbaijan Standard Time": "Asia/Baku",
    "Russia Time Zone 3": "Europe/Samara",
    "Mauritius Standard Time": "Indian/Mauritius",
    "Saratov Standard Time": "Europe/Saratov",
    "Georgian Standard Time": "Asia/Tbilisi",
    "Caucasus Standard Time": "Asia/Yerevan",
    "Afghanistan Standard Time": "Asia/Kabul",
    "West Asia Standard Time": "Asia/Tashkent",
    "Ekaterinburg Standard Time": "Asia/Yekaterinburg",
    "Pakistan Standard Time": "Asia/Karachi",
    "Qyzylorda Standard Time": "Asia/Qyzylorda",
    "India Standard Time": "Asia/Kolkata",
    "Sri Lanka Standard Time": "Asia/Colombo",
    "Nepal Standard Time": "Asia/Kathmandu",
    "Central Asia Standard Time": "Asia/Almaty",
    "Bangladesh Standard Time": "Asia/Dhaka",
    "Omsk Standard Time": "Asia/Omsk",
    "Myanmar Standard Time": "Asia/Yangon",
    "SE Asia Standard Time": "Asia/Bangkok",
    "Altai Standard Time": "Asia/Barnaul",
    "W. Mongolia Standard Time": "Asia/Hovd",
    "North Asia Standard Time": "Asia/Krasnoyarsk",
    "N. Central Asia Standard Time": "Asia/Novosibirsk",
    "Tomsk Standard Time": "Asia/Tomsk",
    "China Standard Time": "Asia/Shanghai",
    "North Asia East Standard Time": "Asia/Irkutsk",
    "Singapore Standard Time": "Asia/Singapore",
    "W. Australia Standard Time": "Australia/Perth",
    "Taipei Standard Time": "Asia/Taipei",
    "Ulaanbaatar Standard Time": "Asia/Ulaanbaatar",
    "Aus Central W. Standard Time": "Australia/Eucla",
    "Transbaikal Standard Time": "Asia/Chita",
    "Tokyo Standard Time": "Asia/Tokyo",
    "North Korea Standard Time": "Asia/Pyongyang",
    "Korea Standard Time": "Asia/Seoul",
    "Yakutsk Standard Time": "Asia/Yakutsk",
    "Cen. Australia Standard Time": "Australia/Adelaide",
    "AUS Central Standard Time": "Australia/Darwin",
    "E. Australia Standard Time": "Australia/Brisbane",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "West Pacific Standard Time": "Pacific/Port_Moresby",
    "Tasmania Standard Time": "Australia/Hobart",
    "Vladivostok Standard Time": "Asia/Vladivostok",
    "Lord Howe Standard Time": "Australia/Lord_Howe",
    "Bougainville Standard Time": "Pacific/Bougainville",
    "Russia Time Zone 10": "Asia/Srednekolymsk",
    "Magadan Standard Time": "Asia/Magadan",
    "Norfolk Standard Time": "Pacific/Norfolk",
    "Sakhalin Standard Time": "Asia/Sakhalin",
    "Central Pacific Standard Time": "Pacific/Guadalcanal",
    "Russia Time Zone 11": "Asia/Kamchatka",
    "New Zealand Standard Time": "Pacific/Auckland",
    "UTC+12": "Etc/GMT-12",
    "Fiji Standard Time": "Pacific/Fiji",
    "Chatham Islands Standard Time": "Pacific/Chatham",
    "UTC+13": "Etc/GMT-13",
    "Tonga Standard Time": "Pacific/Tongatapu",
    "Samoa Standard Time": "Pacific/Apia",
    "Line Islands Standard Time": "Pacific/Kiritimati",
}
