"""Personal page links: ``<APPBAN_PUBLIC_URL>/me/<token>``, signed and expiring.

A token is ``<email, base64url>.<expiry, seconds since the epoch>.<signature>``; the
signature is HMAC-SHA256 under the database's ``link_key`` (made with the schema),
cut to 128 bits. Whoever holds a link sees that person's page until it expires;
nothing is stored per link, so ``appban people link`` can print a fresh one any time.

The page's forms carry ``form_token(store, token)``, an HMAC of the link's token
under the same key with its own label: a page from another site cannot make it
without the link, and a link is never a form token (the label differs).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from appban import settings
from appban.clock import Micros
from appban.store import Store

_MAX_TOKEN = 600  # an email of at most 320 characters, base64url, and the rest


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _key(store: Store) -> bytes:
    key = store.get_meta("link_key")
    if not key:
        raise RuntimeError("this database has no link_key (schema 10 makes one)")
    return bytes.fromhex(key)


def _signature(key: bytes, email: str, expires: int) -> str:
    mac = hmac.new(key, f"{email}\n{expires}".encode(), hashlib.sha256).digest()[:16]
    return _b64(mac)


def token(store: Store, email: str, now: Micros, ttl: Micros | None = None) -> str:
    """A fresh token for ``email``'s page, valid for ``ttl`` (APPBAN_LINK_TTL) from ``now``."""
    if ttl is None:
        ttl = settings.duration("link_ttl")
    expires = (now + ttl) // 1_000_000
    return f"{_b64(email.encode())}.{expires}.{_signature(_key(store), email, expires)}"


def url(store: Store, email: str, now: Micros, ttl: Micros | None = None) -> str:
    """The full link: APPBAN_PUBLIC_URL + /me/ + a fresh token."""
    base = str(settings.get("public_url")).rstrip("/")
    return f"{base}/me/{token(store, email, now, ttl)}"


# A token exactly as ``token`` writes it: base64url without padding, the expiry's digits
# without a leading zero, a 128-bit signature. Anything else (a character base64 would
# skip, a padding "=", "007" for "7") is not a token, even when it would decode to one.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{2,}\.[1-9][0-9]{0,11}\.[A-Za-z0-9_-]{22}", re.ASCII)


def read(store: Store, text: str, now: Micros) -> str | None:
    """The email a token was made for, or None: malformed, forged, or expired.

    One link is one string: the token is rebuilt from what it decodes to and must be
    the same text, so no altered spelling of a link opens the page (nor has a form
    token of its own)."""
    if len(text) > _MAX_TOKEN or not _TOKEN.fullmatch(text):
        return None
    who, expiry, _mac = text.split(".")
    try:
        email = base64.b64decode(who + "=" * (-len(who) % 4), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    expires = int(expiry)
    made = f"{_b64(email.encode())}.{expires}.{_signature(_key(store), email, expires)}"
    if not hmac.compare_digest(text.encode(), made.encode()):
        return None
    if expires * 1_000_000 <= now:
        return None
    return email


def form_token(store: Store, token_text: str) -> str:
    """The hidden field of the forms on the page ``token_text`` opens (the page's CSRF guard)."""
    mac = hmac.new(_key(store), f"form\n{token_text}".encode(), hashlib.sha256).digest()[:16]
    return _b64(mac)
