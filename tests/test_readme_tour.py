"""The README's tour, run as written: every answer it shows must be the answer at that point.

The shell blocks of "A tour" run in bash with the real ``appban`` command and a real
gate (on a free port instead of 8089). ``curl`` is a stand-in that asks the gate as
``curl -si -H ... URL`` would, once the gate has caught up with the store (waited for
with a generous deadline), and compares the answer with the README's comment; a comment
``# {"decision":...}`` under ``gate decide`` must be what it printed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# `curl -si -H 'X-Original-URI: ...' URL  # 403, X-Appban-Reason: blocked:tiktok-mail`
_CURL = re.compile(r"#\s*(\d{3}), X-Appban-Reason: (\S+)")

CURL = textwrap.dedent(
    """\
    import json, os, sqlite3, sys, time, urllib.error, urllib.parse, urllib.request

    want = (sys.argv[1], sys.argv[2])
    args = sys.argv[3:]
    headers = dict(a.split(": ", 1) for a, flag in zip(args[1:], args) if flag == "-H")
    url = args[-1]
    # The gate follows the store: wait (generously) until its table has every change
    # committed so far, then ask once. The answer must be the one the README shows.
    con = sqlite3.connect(f"file:{os.environ['APPBAN_DB']}?mode=ro", uri=True)
    store_seq = int(con.execute("SELECT value FROM meta WHERE key = 'gate_seq'").fetchone()[0])
    con.close()
    health = urllib.parse.urljoin(url, "/healthz")
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(health, timeout=5) as r:
                if json.load(r)["table_seq"] >= store_seq:
                    break
        except OSError:
            pass  # the gate is still starting
        if time.monotonic() > deadline:
            sys.exit(f"the gate at {health} did not catch up with the store")
        time.sleep(0.05)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            got = (str(r.status), r.headers.get("X-Appban-Reason"))
    except urllib.error.HTTPError as e:
        got = (str(e.code), e.headers.get("X-Appban-Reason"))
    if got != want:
        sys.exit(f"curl {url}: the README says {want}, the gate answered {got}")
    print(f"HTTP {got[0]} X-Appban-Reason: {got[1]}")
    """
)


def _tour() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## A tour") :]
    section = section[: section.index("\n## ", 1)]
    return "\n".join(re.findall(r"```sh\n(.*?)```", section, re.S))


def _join_continuations(script: str) -> list[str]:
    return script.replace("\\\n", " ").splitlines()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_the_readme_tour_says_what_happens(tmp_path: Path) -> None:
    port = _free_port()
    shim = tmp_path / "curl_expect.py"
    shim.write_text(CURL, encoding="utf-8")
    lines, expected_json = [], []
    for line in _join_continuations(_tour()):
        line = line.replace("8089", str(port))
        wanted = _CURL.search(line)
        if line.lstrip().startswith("curl "):
            assert wanted, f"a curl line in the tour says what it answers: {line}"
            line = f"{sys.executable} {shim} {wanted[1]} {wanted[2]} " + line.lstrip()[len("curl ") :]
        if line.startswith("# {"):
            expected_json.append(json.loads(line[2:]))
        lines.append(line)
    assert expected_json and any("curl_expect" in x for x in lines), "the tour shows the gate and its answers"
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + "\n".join(lines) + "\n"
    bin_dir = Path(sys.executable).parent  # where pip put the `appban` command
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPBAN_")}
    env.update({"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "TMPDIR": str(tmp_path)})
    proc = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    printed = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    for doc in expected_json:
        assert doc in printed, (doc, printed)
    assert "audit log:" in proc.stdout and "intact" in proc.stdout
