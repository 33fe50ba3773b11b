"""A real ``appban serve`` for tests, on a socket: in a thread, or as a child process.

- ``ThreadServer(db)``: ``create_app(db=...)`` under ``uvicorn.Server`` in a thread on a
  free port (fast; settings are read from this process's environment, so
  ``monkeypatch.setenv`` before starting it changes them).
- ``ServeProcess(db, *args)``: ``python -m appban --db DB serve --port 0 ARGS`` in a
  child process; its stderr is kept in ``log`` (the access log is there).
- ``new_database(folder)``: an initialised database with source ``agent`` and its token.
- ``checkin(...)``: one check-in in SPEC's format.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from appban.serve import protocol
from appban.serve.app import create_app
from helpers_cli import run

CHECKINS = "/api/v1/checkins"
TIKTOK = {"id": "com.zhiliaoapp.musically", "name": "TikTok", "version": "16.5.0"}
NOTES = {"id": "com.example.notes", "name": "Notes", "version": "1.0"}


@dataclass(frozen=True)
class Database:
    path: str
    token: str  # a live token of source "agent"

    def appban(self, *args: str, env: Mapping[str, str] | None = None) -> Any:
        """``appban --db PATH ARGS --json``, in this process; the parsed document."""
        result = run("--db", self.path, *args, "--json", env=env)
        assert result.code == 0, result.err
        return json.loads(result.out)

    def token_for(self, source: str) -> str:
        run("--db", self.path, "source", "add", source)
        return str(self.appban("source", "token", "create", source)["token"])


def new_database(folder: Path, *, now: str | None = None) -> Database:
    db = str(folder / "appban.db")
    args = ["--now", now] if now else []
    assert run("--db", db, "init", *args).code == 0
    assert run("--db", db, "source", "add", "agent").code == 0
    created = run("--db", db, "source", "token", "create", "agent", "--json")
    assert created.code == 0, created.err
    return Database(db, json.loads(created.out)["token"])


def checkin(
    device_id: str,
    *,
    owner: str = "jane.doe@example.com",
    apps: list[dict[str, str]] | None = None,
    at: str = "2020-07-10T15:00:00Z",
    platform: str = "ios",
    eas: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    device = {"id": device_id, "platform": platform, "owner": owner, "eas_device_ids": eas or []}
    return {"device": device, "observed_at": at, "apps": [NOTES] if apps is None else apps, **extra}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class ThreadServer:
    """``appban serve``'s app under uvicorn in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, db: str, **config: Any) -> None:
        self.app = create_app(db=db)
        # appban serve's own bounds (protocol.options), as the command runs it, unless a test says otherwise.
        options = {**protocol.options(), **config}
        cfg = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on", **options
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("appban serve did not start in its thread")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        assert not self.thread.is_alive(), "appban serve did not stop"

    def __enter__(self) -> ThreadServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServeProcess:
    """``appban serve`` in a child process; ``port`` from the line it logs when listening."""

    def __init__(self, db: str, *args: str, env: Mapping[str, str] | None = None, wait: bool = True) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("APPBAN_")}
        environment.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appban", "--db", db, "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
        )
        self.log: list[str] = []
        self.port = 0
        self.scheme = "http"
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if wait and (not self._listening.wait(30) or not self.port):
            self.stop()
            raise AssertionError("appban serve did not start:\n" + "".join(self.log))

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.log.append(line)
            found = re.search(r"running on (https?)://\S+:(\d+)", line)
            if found:
                self.scheme, self.port = found.group(1), int(found.group(2))
                self._listening.set()
        self._listening.set()

    def access_log(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log if line.startswith("{")]

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
