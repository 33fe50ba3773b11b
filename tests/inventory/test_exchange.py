"""The ``exchange`` format: Exchange's mail partnerships, as Export-Csv and ConvertTo-Json save them.

Golden files (tests/inventory/golden/exchange/): each export beside
``<name>.expected.json``, the check-ins the reader must make of it. The exports are
built from the cmdlets' documented properties and examples:

- Get-MobileDevice: https://learn.microsoft.com/powershell/module/exchange/get-mobiledevice
- Get-MobileDeviceStatistics: https://learn.microsoft.com/powershell/module/exchange/get-mobiledevicestatistics
- Get-EXOMobileDeviceStatistics: https://learn.microsoft.com/powershell/module/exchange/get-exomobiledevicestatistics
- Export-Csv: https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/export-csv
- ConvertTo-Json: https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/convertto-json
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appban.clock import format_time, parse_time
from appban.errors import BadInput
from appban.inventory.base import ReadOptions
from appban.inventory.checkin import Checkin
from appban.inventory.exchange import ExchangeFormat
from fuzzing import examples
from helpers_cli import NOW, Fleet, assert_bad_input, where

GOLDEN = Path(__file__).parent / "golden" / "exchange"
NOW_US = parse_time(NOW)


def read(path: Path, *, zone: str = "UTC", owners: dict[str, str] | None = None) -> list[dict[str, Any]]:
    options = ReadOptions(now=NOW_US, max_bytes=1 << 20, timezone=ZoneInfo(zone), owners=owners or {})
    return [shown(line, c) for line, c in ExchangeFormat().read(str(path), options)]


def shown(line: int | None, c: Checkin) -> dict[str, Any]:
    d = c.device
    return {
        "line": line,
        "source": c.source,
        "id": d.id,
        "platform": d.platform,
        "owner": d.owner,
        "observed_at": format_time(c.observed_at),
        "model": d.model,
        "os_version": d.os_version,
        "eas_device_ids": d.eas_device_ids,
        "inventory_scope": d.inventory_scope,
        "mail_access": d.mail_access,
        "ownership": d.ownership,
        "apps": len(c.apps),
        "identifiers": [list(i) for i in d.identifiers],
    }


def expected(name: str) -> list[dict[str, Any]]:
    return json.loads((GOLDEN / f"{name}.expected.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# -- golden exports ----------------------------------------------------------------------------


def test_exchange_online_get_mobiledevice_csv() -> None:
    """Windows PowerShell 5.1 in an Exchange Online session: ``Get-MobileDevice -ResultSize
    Unlimited | Export-Csv``, with its ``#TYPE Deserialized...`` line, every value quoted,
    ASCII (so ``§`` is written ``?``) and en-US times. Identity is
    ``<mailbox>\\ExchangeActiveSyncDevices\\<type>§<DeviceId>`` as in the documented
    example ``Lila\\ExchangeActiveSyncDevices\\REST§Outlook§5eec...``; the mailbox may be
    named by its GUID. Get-MobileDevice has no sync time: the command's clock.
    https://learn.microsoft.com/powershell/module/exchange/get-mobiledevice
    """
    assert read(GOLDEN / "exo-get-mobiledevice.csv") == expected("exo-get-mobiledevice.csv")


def test_exchange_server_statistics_utf16_csv() -> None:
    """Exchange Server's management shell, en-GB culture, server in London: Get-MobileDevice
    joined with Get-MobileDeviceStatistics, ``Export-Csv -NoTypeInformation -Encoding
    Unicode`` (UTF-16 LE). Identity is the canonical name
    ``contoso.com/Users/Jane Doe/ExchangeActiveSyncDevices/...``; the times are the
    server's local time, read with ``--timezone Europe/London``.
    https://learn.microsoft.com/powershell/module/exchange/get-mobiledevicestatistics
    """
    got = read(GOLDEN / "onprem-statistics-utf16.csv", zone="Europe/London")
    assert got == expected("onprem-statistics-utf16.csv")
    # 10/07/2020 16:00:00 in London (BST) is 15:00 UTC: day first, and the zone applied.
    assert got[0]["observed_at"] == "2020-07-10T15:00:00Z"


def test_powershell_51_convertto_json_utf16() -> None:
    """Windows PowerShell 5.1: ``Get-MobileDeviceStatistics -Mailbox jane.doe | ConvertTo-Json
    > file``: UTF-16 LE, times as ``\\/Date(1594396931000)\\/``, an array.
    https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/convertto-json
    """
    got = read(GOLDEN / "ps51-exo-statistics-utf16.json")
    assert got == expected("ps51-exo-statistics-utf16.json")
    assert got[0]["observed_at"] == "2020-07-10T16:02:11Z"


def test_powershell_7_one_device_is_one_object() -> None:
    """PowerShell 7 with the Exchange Online module: ``Get-EXOMobileDeviceStatistics`` of a
    mailbox with one device, so ConvertTo-Json writes one object, not an array; ISO
    times with seven digits of a second; the script added the UserPrincipalName.
    https://learn.microsoft.com/powershell/module/exchange/get-exomobiledevicestatistics
    """
    assert read(GOLDEN / "ps7-exo-one-device.json") == expected("ps7-exo-one-device.json")


# -- through the command line ------------------------------------------------------------------


def _show(fleet: Fleet, device: str) -> dict[str, Any]:
    result = fleet.run("device", "show", device, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def test_import_names_the_owner_from_the_export_and_the_device_reads_mail(fleet: Fleet) -> None:
    result = fleet.run("import", "exchange", str(GOLDEN / "ps7-exo-one-device.json"), "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["checkins"] == 1
    shown = _show(fleet, "androidc1458921379")
    assert shown["owner"] == "bob.roe@example.com"
    assert shown["eas_device_ids"] == ["androidc1458921379"]
    assert shown["mail_access"] is True and shown["inventory_scope"] == "none"
    # No apps seen: never compliant.
    assert shown["policies"]["tiktok-mail"]["state"] == "unverified"


def test_a_bare_mailbox_alias_is_completed_with_the_one_mail_domain(fleet: Fleet) -> None:
    env = {"APPBAN_MAIL_DOMAINS": "example.com"}
    result = fleet.run("import", "exchange", str(GOLDEN / "exo-get-mobiledevice.csv"), env=env)
    assert result.code == 0, result.err
    assert _show(fleet, "V2UVOT7J157L7C1FLLSAABSOV4")["owner"] == "jane.doe@example.com"
    assert _show(fleet, "E9EFCC65EB1A42CB9307F4EE165A460C")["owner"] == "bob.roe@example.com"
    # A mailbox named by its GUID is no address: the owner stays unknown.
    assert not _show(fleet, "DVQ3MPWN8C5K1R7T4Y2E6U0IAB")["owner"]


def test_without_one_mail_domain_an_alias_names_no_one(fleet: Fleet) -> None:
    env = {"APPBAN_MAIL_DOMAINS": "example.com,example.org"}
    result = fleet.run("import", "exchange", str(GOLDEN / "exo-get-mobiledevice.csv"), env=env)
    assert result.code == 0, result.err
    assert not _show(fleet, "V2UVOT7J157L7C1FLLSAABSOV4")["owner"]


def test_owners_mapping_by_mailbox_name_wins_over_completion(fleet: Fleet) -> None:
    owners = fleet.write("owners.csv", "key,email\r\nJane Doe,jane.doe@example.com\r\njane.doe,bob.roe@example.com\r\n")
    path = GOLDEN / "onprem-statistics-utf16.csv"
    env = {"APPBAN_MAIL_DOMAINS": "example.com"}
    result = fleet.run("import", "exchange", str(path), "--owners", str(owners), "--timezone", "Europe/London", env=env)
    assert result.code == 0, result.err
    assert _show(fleet, "ApplF17LTTCGFFG8")["owner"] == "jane.doe@example.com"  # "Jane Doe" from Identity
    assert not _show(fleet, "ApplDNPXK2H3JC6F")["owner"]  # Ann Lee: no mapping, no address
    # The EXO export's "jane.doe" is mapped (to bob here): the mapping, not the domain, decides.
    owners = fleet.write("owners2.csv", "key,email\r\njane.doe,bob.roe@example.com\r\n")
    result = fleet.run("import", "exchange", str(GOLDEN / "exo-get-mobiledevice.csv"), "--owners", str(owners), env=env)
    assert result.code == 0, result.err
    assert _show(fleet, "V2UVOT7J157L7C1FLLSAABSOV4")["owner"] == "bob.roe@example.com"


def test_a_row_without_deviceid_is_refused_and_nothing_written(fleet: Fleet) -> None:
    text = (
        '"DeviceId","DeviceOS","Identity"\r\n"ABC123","iOS 13.5","jane\\ExchangeActiveSyncDevices\\iPhone§ABC123"\r\n'
    )
    path = fleet.write("bad.csv", text + '"","Android 10","bob\\ExchangeActiveSyncDevices\\x"\r\n')
    assert_bad_input(fleet.run("import", "exchange", str(path)), where(path, 3), "field DeviceId", "missing")
    fleet.assert_unchanged()


def test_a_bad_time_names_its_json_path(fleet: Fleet) -> None:
    doc = [{"DeviceID": "ABC123", "DeviceOS": "iOS 13.5", "LastSuccessSync": "yesterday"}]
    path = fleet.write("bad.json", json.dumps(doc))
    assert_bad_input(fleet.run("import", "exchange", str(path)), str(path), "field [0].LastSuccessSync", "yesterday")
    fleet.assert_unchanged()


def test_an_activesync_deviceid_with_a_space_is_refused(fleet: Fleet) -> None:
    path = fleet.write("bad.json", json.dumps({"DeviceId": "ABC 123", "DeviceOS": "Android 10", "ClientType": "EAS"}))
    assert_bad_input(fleet.run("import", "exchange", str(path)), str(path), "field [0].DeviceId")
    fleet.assert_unchanged()


def test_not_json_is_refused(fleet: Fleet) -> None:
    path = fleet.write("bad.json", '[{"DeviceId": "ABC123",')
    assert_bad_input(fleet.run("import", "exchange", str(path)), str(path), "not valid JSON")
    fleet.assert_unchanged()


# -- the reader's rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "zone", "instant"),
    [
        ("7/10/2020 3:00:00 PM", "UTC", "2020-07-10T15:00:00Z"),  # en-US
        ("7/10/2020 12:05:00 AM", "UTC", "2020-07-10T00:05:00Z"),
        ("10/07/2020 15:00:00", "Europe/London", "2020-07-10T14:00:00Z"),  # en-GB, fr-FR: day first
        ("10.07.2020 15:00:00", "Europe/Berlin", "2020-07-10T13:00:00Z"),  # de-DE
        ("2020/07/10 15:00:00", "Asia/Tokyo", "2020-07-10T06:00:00Z"),  # ja-JP
        ("2020-07-10T15:00:00", "America/New_York", "2020-07-10T19:00:00Z"),  # PowerShell 7, no offset
        ("2020-07-10T15:00:00+02:00", "America/New_York", "2020-07-10T13:00:00Z"),
        ("2020-07-10T15:00:00.1234567Z", "UTC", "2020-07-10T15:00:00.123456Z"),
        ("/Date(1594393200000)/", "Asia/Tokyo", "2020-07-10T15:00:00Z"),  # always UTC
    ],
)
def test_times_as_powershell_writes_them(tmp_path: Path, written: str, zone: str, instant: str) -> None:
    doc = {"DeviceId": "ABC123", "DeviceOS": "Android 10", "LastSuccessSync": written}
    got = read(write(tmp_path, "one.json", json.dumps(doc)), zone=zone)
    assert parse_time(got[0]["observed_at"]) == parse_time(instant)


def test_a_wrapped_time_and_never_synced(tmp_path: Path) -> None:
    doc = [
        {
            "DeviceId": "A1",
            "DeviceOS": "Android 10",
            "LastSuccessSync": {"value": "/Date(1594393200000)/", "DateTime": "x"},
        },
        # DateTime.MinValue: never synced; the last attempt is the last contact.
        {
            "DeviceId": "A2",
            "DeviceOS": "Android 10",
            "LastSuccessSync": "1/1/0001 12:00:00 AM",
            "LastSyncAttemptTime": "2020-07-11T08:00:00Z",
        },
        {"DeviceId": "A3", "DeviceOS": "Android 10", "LastSuccessSync": None},
    ]
    got = read(write(tmp_path, "x.json", json.dumps(doc)))
    assert [g["observed_at"] for g in got] == ["2020-07-10T15:00:00Z", "2020-07-11T08:00:00Z", NOW]


@pytest.mark.parametrize(
    "written", ["13/13/2020 10:00:00", "7/10/2020 13:00:00 PM", "/Date(99999999999999999)/", "soon"]
)
def test_a_time_that_is_none_is_refused(tmp_path: Path, written: str) -> None:
    path = write(tmp_path, "x.csv", f"DeviceId,DeviceOS,LastSuccessSync\r\nA1,Android 10,{written}\r\n")
    with pytest.raises(BadInput) as caught:
        read(path)
    assert (caught.value.file, caught.value.line, caught.value.field) == (str(path), 2, "LastSuccessSync")


@pytest.mark.parametrize(
    ("os", "device_type", "model", "agent", "platform"),
    [
        ("iOS 13.5.1 17F80", "iPhone", "iPhone12C1", "Apple-iPhone12C1/1705.80", "ios"),
        ("iOS 13.5 17F75", "iPad", "iPad8C1", "Apple-iPad8C1/1705.75", "ipados"),
        ("iOS 13.5.1", "Outlook", "Outlook for iOS and Android", "Outlook-iOS/2.0", "ios"),
        ("Android 10.0.0", "SAMSUNGSMG960F", "SM-G960F", "Android-SAMSUNG-SM-G960F/101.9.0", "android"),
        ("Windows 10.0.19041", "WindowsMail", "Surface Pro 7", "MSFT-WIN-3/10.0.19041", "windows"),
        ("", "iPhone", "iPhone9C3", "", "ios"),
        ("", "Outlook", "", "Outlook-Android/2.0", "android"),
        ("", "BlackBerry", "Q10", "RIM-Q10/10.3.3", None),
    ],
)
def test_platform(tmp_path: Path, os: str, device_type: str, model: str, agent: str, platform: str | None) -> None:
    doc = {
        "DeviceId": "ABC123",
        "DeviceOS": os,
        "DeviceType": device_type,
        "DeviceModel": model,
        "DeviceUserAgent": agent,
    }
    got = read(write(tmp_path, "x.json", json.dumps(doc)))
    assert [g["platform"] for g in got] == ([platform] if platform else [])


def test_identity_as_powershell_object_and_address_as_mailbox(tmp_path: Path) -> None:
    """ConvertTo-Json of an Exchange object not converted to text writes Identity as its
    ADObjectId; a mailbox named by an address is its owner."""
    dn = "CN=iPhone§ABC123,CN=ExchangeActiveSyncDevices,CN=jane.doe,OU=contoso.onmicrosoft.com,DC=EURPR01"
    doc = [
        {"DeviceId": "ABC123", "DeviceOS": "iOS 14", "Identity": {"Name": "iPhone§ABC123", "DistinguishedName": dn}},
        {"DeviceId": "DEF456", "DeviceOS": "iOS 14", "Identity": "ann@example.com\\ExchangeActiveSyncDevices\\x"},
    ]
    got = read(write(tmp_path, "x.json", json.dumps(doc)))
    assert got[0]["identifiers"] == [["alias", "jane.doe"]] and got[0]["owner"] is None
    assert got[1]["owner"] == "ann@example.com" and got[1]["identifiers"] == []


def test_rest_pages_and_json_lines(tmp_path: Path) -> None:
    page = {"@odata.context": "x", "value": [{"DeviceId": "A1", "DeviceOS": "iOS 14"}]}
    line = {"DeviceId": "A2", "DeviceOS": "Android 11"}
    got = read(write(tmp_path, "x.json", json.dumps(page) + "\n" + json.dumps(line) + "\n"))
    assert [g["id"] for g in got] == ["A1", "A2"]


def test_source_name(tmp_path: Path) -> None:
    path = write(tmp_path, "x.json", json.dumps({"DeviceId": "A1", "DeviceOS": "iOS 14"}))
    options = ReadOptions(now=NOW_US, max_bytes=1 << 20, source="exchange-eu")
    assert [c.source for _l, c in ExchangeFormat().read(str(path), options)] == ["exchange-eu"]


# -- fuzzing: anything becomes check-ins or appban's BadInput ------------------------------------

_SEEDS = [p.read_bytes() for p in sorted(GOLDEN.iterdir()) if not p.name.endswith(".expected.json")]
_FUZZ = settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_bytes(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, "fuzz", data)
    with mock.patch.dict(os.environ, {"APPBAN_MAIL_DOMAINS": "example.com"}):
        try:
            for _line, _checkin in ExchangeFormat().read(str(path), ReadOptions(now=NOW_US, max_bytes=4096)):
                pass
        except BadInput:
            pass


@_FUZZ
@given(
    seed=st.sampled_from(_SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 40), st.binary(max_size=12)), max_size=6),
)
def test_fuzz_mutated_exports(tmp_path: Path, seed: bytes, edits: list[tuple[int, int, bytes]]) -> None:
    data = bytearray(seed)
    for at, cut, insert in edits:
        at %= len(data) + 1
        data[at : at + cut] = insert
    _read_bytes(tmp_path, bytes(data))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_KEYS = ["DeviceId", "DeviceID", "DeviceOS", "DeviceType", "DeviceModel", "DeviceImei", "DeviceUserAgent", "Identity"]
_KEYS += ["UserDisplayName", "LastSuccessSync", "LastSyncAttemptTime", "ClientType", "UserPrincipalName", "value"]
_VALUES = _JSON | st.sampled_from(
    ["iOS 13.5", "Android 10", "/Date(1594393200000)/", "7/10/2020 3:00:00 PM", "jane\\ExchangeActiveSyncDevices\\x"]
)


@_FUZZ
@given(st.lists(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=8), max_size=4), st.booleans())
def test_fuzz_json_structures(tmp_path: Path, records: list[dict[str, Any]], one: bool) -> None:
    doc: Any = records[0] if one and records else records
    _read_bytes(tmp_path, json.dumps(doc).encode())


@_FUZZ
@given(st.lists(st.lists(st.text(max_size=20), min_size=3, max_size=3), max_size=4))
def test_fuzz_csv_cells(tmp_path: Path, rows: list[list[str]]) -> None:
    lines = ["DeviceId,DeviceOS,LastSuccessSync"]
    lines += [",".join('"' + c.replace('"', '""') + '"' for c in row) for row in rows]
    _read_bytes(tmp_path, "\r\n".join(lines).encode("utf-8", "surrogatepass"))


def test_an_export_written_with_the_culture_s_list_separator_is_read(tmp_path: Path) -> None:
    """Export-Csv -UseCulture (or -Delimiter ';') in locales whose list separator is ';'."""
    source = GOLDEN / "exo-get-mobiledevice.csv"
    rows = list(csv.reader(io.StringIO(source.read_text(encoding="utf-8-sig"))))
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\r\n").writerows(rows)
    path = tmp_path / "semicolons.csv"
    path.write_text(out.getvalue(), encoding="utf-8-sig")
    assert read(path) == read(source)


def test_an_address_column_that_holds_no_address_is_refused(fleet: Fleet) -> None:
    text = (
        '"DeviceId","DeviceOS","Identity","PrimarySmtpAddress"\r\n"ABC123","iOS 13.5","jane\\\\x","jane at example"\r\n'
    )
    path = fleet.write("bad-address.csv", text)
    assert_bad_input(fleet.run("import", "exchange", str(path)), where(path, 2), "PrimarySmtpAddress")
    fleet.assert_unchanged()
