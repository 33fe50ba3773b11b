"""Sources that post check-ins to ``appban serve``, and their tokens.

A token is 256 random bits, shown once when it is made; the store keeps only its
SHA-256 digest. (A slow password hash would protect a guessable secret; these are not
guessable, and every API request checks one, so a fast digest is the right one.) The
token decides the source: a check-in posted with it is filed under that source.

osquery agents enroll with a shared enroll secret (``--enroll_secret_path``), kept the
same way, as a token of kind ``osquery-secret``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from appban.clock import format_time
from appban.errors import BadInput, NotFound
from appban.workspace import Workspace

TOKEN = "token"
OSQUERY_SECRET = "osquery-secret"
# The source osquery agents' check-ins are filed under when no other is named.
OSQUERY_SOURCE = "osquery"
_PREFIX = {TOKEN: "appban-src-", OSQUERY_SECRET: "appban-enroll-"}
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # as a check-in's "source"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise BadInput(
            f"bad source name {name[:64]!r}: 1 to 64 lower-case letters, digits, '.', '_' and '-'", field="NAME"
        )


def add_source(ws: Workspace, name: str) -> dict[str, Any]:
    check_name(name)
    with ws.writing(evaluates=False):
        added = ws.store.add_source(name, ws.now)
        if added:
            ws.audit.append(ws.now, "source-add", name, {})
    return {"source": name, "added": added}


def create_token(ws: Workspace, name: str, kind: str = TOKEN) -> dict[str, Any]:
    """A new token for source ``name`` (printed once: only its digest is stored)."""
    check_name(name)
    token = _PREFIX[kind] + secrets.token_urlsafe(32)
    with ws.writing(evaluates=False):
        if kind == OSQUERY_SECRET:
            if ws.store.add_source(name, ws.now):
                ws.audit.append(ws.now, "source-add", name, {})
        elif name not in {s.name for s in ws.store.list_sources()}:
            raise NotFound(f"no source {name!r}: add it first (appban source add {name})", field="NAME")
        token_id = ws.store.put_token(name, kind, digest(token), ws.now)
        ws.audit.append(ws.now, f"{kind}-create", name, {"id": token_id})
    return {"source": name, "kind": kind, "id": token_id, "token": token}


def revoke_tokens(ws: Workspace, name: str, kind: str = TOKEN) -> dict[str, Any]:
    """Revoke every live token (or enroll secret) of ``name``; requests with them get 401 at once."""
    check_name(name)
    with ws.writing(evaluates=False):
        if name not in {s.name for s in ws.store.list_sources()}:
            raise NotFound(f"no source {name!r}", field="NAME")
        ids = ws.store.revoke_tokens(name, kind, ws.now)
        if ids:
            ws.audit.append(ws.now, f"{kind}-revoke", name, {"ids": ids})
    return {"source": name, "kind": kind, "revoked": ids}


def list_sources(ws: Workspace) -> dict[str, Any]:
    return {
        "sources": [
            {
                "name": s.name,
                "created_at": format_time(s.created_at),
                "tokens": s.tokens,
                "osquery_secrets": s.osquery_secrets,
            }
            for s in ws.store.list_sources()
        ]
    }


def authenticate(store: Any, token: str, kind: str = TOKEN) -> str | None:
    """The source a live token of ``kind`` belongs to, or None."""
    if not token.startswith(_PREFIX[kind]) or len(token) > 200:
        return None
    row = store.token_by_digest(digest(token))
    if row is None or row.kind != kind or row.revoked_at is not None:
        return None
    return str(row.source)
