"""An osquery-shaped client for tests against a running ``appban serve``: what osquery's
tls plugins post (plugins/remote/enroll/tls_enroll.cpp, plugins/logger/tls_logger.cpp,
plugins/distributed/tls_distributed.cpp): ``node_key`` in the body and
``Authorization: NodeKey``, host_details from os_version, osquery_info, system_info and
platform_info, log entries as osquery's logger writes them."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import httpx

OSQUERY = "/api/v1/osquery"
SERIAL = "C02XL0GYJGH5"
UUID = "4740D59F-699E-5B29-960B-979AAF9BBEEB"
EAS = "EASJANEMAC1"
JANE = "jane.doe@example.com"
TIKTOK = {
    "name": "TikTok.app",
    "display_name": "TikTok",
    "bundle_name": "TikTok",
    "bundle_identifier": "com.zhiliaoapp.musically",
    "bundle_short_version": "16.5.0",
    "bundle_version": "165010",
}
SAFARI = {
    "name": "Safari.app",
    "display_name": "Safari",
    "bundle_name": "Safari",
    "bundle_identifier": "com.apple.Safari",
    "bundle_short_version": "13.1.1",
    "bundle_version": "15609.2.9.1.2",
}


def host_details(*, platform: str = "darwin", serial: str = SERIAL, uuid: str = UUID) -> dict[str, Any]:
    """osquery's enroll host_details: a row of each table, every value a string."""
    return {
        "os_version": {
            "name": "macOS",
            "version": "10.15.5",
            "major": "10",
            "minor": "15",
            "patch": "5",
            "build": "19F101",
            "platform": platform,
            "platform_like": platform,
            "codename": "",
        },
        "osquery_info": {"version": "5.12.1", "build_platform": platform, "config_valid": "0", "pid": "4242"},
        "system_info": {
            "hostname": "jane-mbp.local",
            "uuid": uuid,
            "cpu_brand": "Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz",
            "physical_memory": "17179869184",
            "hardware_vendor": "Apple Inc.",
            "hardware_model": "MacBookPro16,1",
            "hardware_serial": serial,
            "computer_name": "Jane's MacBook Pro",
            "local_hostname": "jane-mbp",
        },
        "platform_info": {"vendor": "Apple Inc.", "version": "1554.120.19.0.0"},
    }


class Agent:
    """What osquery's tls plugins post, against a running appban serve."""

    def __init__(self, url: str, host: str = "jane-mbp.local") -> None:
        self.http = httpx.Client(base_url=url, timeout=30, headers={"User-Agent": "osquery/5.12.1"})
        self.host = host
        self.node_key = ""

    def close(self) -> None:
        self.http.close()

    def post(self, endpoint: str, body: dict[str, Any], *, compress: bool = False) -> httpx.Response:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.node_key:
            headers["Authorization"] = f"NodeKey {self.node_key}"
            body = {"node_key": self.node_key, **body}
        data = json.dumps(body).encode()
        if compress:  # --logger_tls_compress
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        return self.http.post(OSQUERY + endpoint, content=data, headers=headers)

    def enroll(self, secret: str, **details: Any) -> httpx.Response:
        answer = self.http.post(
            OSQUERY + "/enroll",
            json={
                "enroll_secret": secret + "\n",  # as read from --enroll_secret_path
                "host_identifier": self.host,
                "platform_type": "21",
                "host_details": host_details(**details),
            },
        )
        if answer.status_code == 200:
            self.node_key = answer.json()["node_key"]
        return answer

    def log(self, *entries: dict[str, Any], compress: bool = False) -> httpx.Response:
        return self.post("/log", {"log_type": "result", "data": list(entries)}, compress=compress)


def entry(name: str, at: int, **fields: Any) -> dict[str, Any]:
    """A result log entry as osquery's logger writes it (numerics false: strings)."""
    return {
        "name": name,
        "hostIdentifier": "jane-mbp.local",
        "calendarTime": time.strftime("%a %b %d %H:%M:%S %Y UTC", time.gmtime(at)),
        "unixTime": at,
        "epoch": 0,
        "counter": 0,
        "numerics": False,
        **fields,
    }


def snapshot(name: str, at: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return entry(name, at, action="snapshot", snapshot=rows)


def event(name: str, at: int, action: str, row: dict[str, Any], *, epoch: int, counter: int) -> dict[str, Any]:
    return entry(name, at, action=action, columns=row, epoch=epoch, counter=counter)


def batch(name: str, at: int, *, added: list[Any], removed: list[Any], epoch: int, counter: int) -> dict[str, Any]:
    return entry(name, at, diffResults={"added": added, "removed": removed}, epoch=epoch, counter=counter)


def statuses(answer: httpx.Response) -> list[tuple[int, str]]:
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["node_invalid"] is False and "error" not in doc  # osquery: any "error" key is a failed send
    return [(r["index"], r["status"]) for r in doc["results"]]
