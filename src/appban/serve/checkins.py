"""``POST /api/v1/checkins``: check-ins from agents and scripts (SPEC: the check-in API).

The body is SPEC's check-in format: one JSON object, a JSON array of them
(``application/json``), or JSON Lines (``application/x-ndjson``), gzip allowed. Each
item is decoded and checked alone, exactly as ``appban import appban`` does, so a bad
item is rejected (naming its field) beside the good ones, which are applied; nothing of
a rejected item is written. The token decides the source.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import time

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from appban import settings
from appban.errors import BadInput
from appban.inventory.checkin import Checkin, CheckinBody, decode_json
from appban.output import plural
from appban.serve.auth import source_of
from appban.serve.bodies import read_body
from appban.serve.budget import ByteBudget
from appban.serve.responses import ApiError, json_response
from appban.serve.service import Refused, Service

JSON = "application/json"
NDJSON = "application/x-ndjson"
# Decoded off the event loop when larger: other requests are answered meanwhile.
_INLINE_BYTES = 64 * 1024
# Bytes of rejected items a request gets exact explanations for (see decode_items).
_EXPLAINED = 256 * 1024
# The check-in decoder alone, without the checks after it (decode_items' quick test).
_decoder = msgspec.json.Decoder(CheckinBody)
# A UTF-16 surrogate written as a JSON escape: valid JSON text that msgspec refuses.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# A line of JSON Lines that is not blank.
_LINE = re.compile(rb"[^\n]*[^ \t\r\n\x0b\x0c][^\n]*")
# One item of a JSON array, whole: scalars, strings and groups nested up to _ITEM_DEPTH
# deep (a check-in is three: itself, its device or apps, an app or the device's list of
# ActiveSync ids; deeper groups are followed by _group_end, step by step, so the depth
# here also sets how few bytes such a step can take). Possessive throughout: no
# backtracking, linear in the item.
_ITEM_DEPTH = 6
_SCALAR = rb'(?:[^\[\]{}",]++|"(?:[^"\\]++|\\.)*+")'


def _value_pattern(depth: int) -> bytes:
    value = _SCALAR
    for _ in range(depth):
        value = rb"(?:" + _SCALAR + rb"|\[(?:" + value + rb"|,)*+\]|\{(?:" + value + rb"|,)*+\})"
    return value


_ITEM = re.compile(_value_pattern(_ITEM_DEPTH) + rb"*+")
# Inside a group: values and commas (a key's colon is one of the scalar's bytes).
_INSIDE = re.compile(rb"(?:" + _value_pattern(_ITEM_DEPTH) + rb"|,)*+")
_OPENERS = re.compile(rb"[\[{]++")
_CLOSERS = re.compile(rb"[\]}]++")
_COMMA, _CLOSE = ord(","), ord("]")


def routes() -> list[BaseRoute]:
    return [Route("/api/v1/checkins", post_checkins, methods=["POST"])]


async def post_checkins(request: Request) -> Response:
    """Post one check-in or a batch.

    ---
    summary: Post check-ins
    description: >-
      One check-in (a JSON object), a batch (a JSON array, or JSON Lines as
      application/x-ndjson), optionally with Content-Encoding gzip. Each item is
      applied, ignored (no newer than what is stored) or rejected (naming its
      field) on its own; a rejected item writes nothing.
    security: [{sourceToken: []}]
    parameters:
    - name: Content-Encoding
      in: header
      required: false
      description: >-
        gzip (or its alias x-gzip) when the body is gzipped; the size limit applies to
        the decompressed body.
      schema: {type: string, enum: [gzip, x-gzip, identity]}
    requestBody:
      required: true
      content:
        application/json:
          schema:
            oneOf:
            - $ref: '#/components/schemas/CheckinBody'
            - type: array
              items: {$ref: '#/components/schemas/CheckinBody'}
        application/x-ndjson:
          schema: {type: string, description: 'JSON Lines: one CheckinBody a line'}
      description: >-
        UTF-8: a Content-Type may say charset=utf-8, and any other charset is refused (415).
    responses:
      '202':
        description: One result per item, in order.
        content: {application/json: {schema: {$ref: '#/components/schemas/CheckinResults'}}}
      '400': &error
        description: The body cannot be parsed (not JSON, not gzip, empty).
        content: {application/json: {schema: {$ref: '#/components/schemas/Error'}}}
      '401': {<<: *error, description: No live source token.}
      '408': {<<: *error, description: The body did not arrive in time.}
      '413': {<<: *error, description: 'Over the body size (decompressed), the item count or the app count limit.'}
      '415': {<<: *error, description: 'Another Content-Type (or charset), or another Content-Encoding.'}
      '429':
        <<: *error
        description: The source posts faster than its limit.
        headers: {Retry-After: {schema: {type: integer}, description: Seconds to wait.}}
      '503':
        <<: *error
        description: The database is busy (another writer held it too long); retry.
        headers: {Retry-After: {schema: {type: integer}, description: Seconds to wait.}}
    """
    service: Service = request.app.state.service
    source = await source_of(request, service)
    kind = _content_kind(request)
    buckets: Buckets = request.app.state.buckets
    buckets.check(source)
    body = await read_body(request, limit=settings.get("serve_max_body_bytes"))
    most = settings.get("serve_max_items")
    budget: ByteBudget = request.app.state.decode_budget
    # Decoded check-ins take many times their body's size until they are applied.
    async with budget.hold(len(body)):
        if len(body) > _INLINE_BYTES:
            items = await asyncio.to_thread(read_items, body, kind, source, most)
        else:
            items = read_items(body, kind, source, most)
        del body
        buckets.take(source, len(items))
        results = await service.apply(f"api:{source}", items)
    return json_response({"results": [r.as_dict() for r in results]}, status=202)


def _content_kind(request: Request) -> str:
    """JSON or NDJSON, from the Content-Type; 415 for another type, or a charset other
    than UTF-8 (JSON exchanged between systems is UTF-8: RFC 8259, section 8.1)."""
    media, _, parameters = request.headers.get("content-type", "").partition(";")
    kind = media.strip().lower()
    if kind not in (JSON, NDJSON):
        raise ApiError(
            415,
            f"Content-Type must be {JSON} (one check-in or an array) or {NDJSON} (JSON Lines)",
            field="Content-Type",
        )
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise ApiError(
                415, "the body must be UTF-8: Content-Type's charset, when given, is utf-8", field="Content-Type"
            )
    return kind


def _split(body: bytes, kind: str, *, most: int) -> list[bytes]:
    """The items of a body, as bytes each; ApiError 400 when the body cannot be parsed,
    413 when it holds more than ``most`` items (found before any item is kept)."""
    if kind == NDJSON:
        # A line that is not JSON is that item's rejection, not the body's.
        lines = list(itertools.islice(_LINE.finditer(body), most + 1))
        if len(lines) > most:
            count = body.count(b"\n") + (not body.endswith(b"\n"))
            raise _too_many(most, f"{plural(count, 'line')} of JSON Lines")
        if not lines:
            raise _empty()
        return [m.group() for m in lines]
    text = body.strip()
    if not text:
        raise _empty()
    if text[:1] != b"[":
        _check_json(text)
        return [text]
    # Decoding keeps an object per item: when there could be a great many, they are
    # cut and counted first, so that half a million tiny items ("[0,0,0,...") never
    # take a gigabyte before they are refused.
    if _many_items_possible(text, most):
        return _checked(_cut_array(text, most))
    try:
        parts = msgspec.json.decode(text, type=list[msgspec.Raw])
    except msgspec.DecodeError:
        # msgspec refuses a lone surrogate escape (\ud800) even where it only skips a
        # value; JSON's grammar allows it, and the item holding it is rejected by its own
        # decoding.
        if not _SURROGATE_ESCAPE.search(text):
            raise _unparsable() from None
        return _checked(_cut_array(text, most))
    except RecursionError:  # an item nested deeper than msgspec follows: that item's rejection
        return _checked(_cut_array(text, most))
    if len(parts) > most:
        raise _too_many(most, plural(len(parts), "check-in"))
    return [bytes(raw) for raw in parts]


def _many_items_possible(text: bytes, most: int) -> bool:
    """Whether the JSON array ``text`` could have more than ``most`` items where decoding
    it to find out could take far more memory than the body (decoding keeps about 60
    bytes an item, and "[0,0,0,..." is two bytes an item).

    Each item but the last ends with a comma: few commas, or few per byte, and decoding
    is safe (the caller counts what it decoded).
    """
    commas = text.count(b",")
    return commas >= most and commas * 60 > 4 * len(text)


def _cut_array(text: bytes, most: int) -> list[bytes]:
    """The items of the JSON array ``text`` (stripped), cut without decoding them; 413
    at item ``most + 1``, 400 when the array itself is malformed.

    Each item is matched whole by one regular expression while it is nested no deeper
    than a check-in; a deeper group is followed by counting its brackets
    (``_group_end``), so it is cut out as one item, to be rejected by its own decoding.
    Whether each item is JSON is checked after (``_checked``).
    """
    spans: list[tuple[int, int]] = []
    last = len(text) - 1
    at = 1
    while True:
        start = at
        at = _skip_values(text, at)
        spans.append((start, at))
        if len(spans) > most:
            raise _too_many(most)
        if at < last and text[at] == _COMMA:
            at += 1
        elif at == last and text[at] == _CLOSE:
            break
        else:
            raise _unparsable(len(spans) - 1)
    if len(spans) == 1 and not text[1:last].strip():
        return []  # "[]"
    return [text[s:e] for s, e in spans]


def _skip_values(text: bytes, at: int) -> int:
    """The end of the values from ``at`` up to the next comma or bracket at this level."""
    while True:
        at = _ITEM.match(text, at).end()  # type: ignore[union-attr]  # matches the empty string too
        if text[at : at + 1] not in (b"[", b"{"):
            return at
        at = _group_end(text, at)


def _group_end(text: bytes, at: int) -> int:
    """Where the group opening at ``at`` ends, however deep: runs of brackets are counted
    and what lies between them, when shallow, is skipped by one match, so that
    "[[[[...]]]]" takes two steps, not one per bracket."""
    depth = 0
    while True:
        opened = _OPENERS.match(text, at)
        if opened is not None:
            depth += opened.end() - at
            at = opened.end()
        at = _INSIDE.match(text, at).end()  # type: ignore[union-attr]  # matches the empty string too
        closed = _CLOSERS.match(text, at)
        if closed is None:
            if text[at : at + 1] in (b"[", b"{"):
                continue
            raise _unparsable()  # the body ends inside the group, or a string never closes
        run = closed.end() - at
        if run >= depth:
            return at + depth
        depth -= run
        at = closed.end()


def _checked(items: list[bytes]) -> list[bytes]:
    """The items, once each is known to be JSON (400 naming the first that is not); an
    item nested too deep to check is left to its own decoding, which rejects it."""
    for index, item in enumerate(items):
        try:
            msgspec.json.decode(item, type=msgspec.Raw)
        except msgspec.DecodeError:
            if not _SURROGATE_ESCAPE.search(item):
                raise _unparsable(index) from None
            try:
                msgspec.json.decode(_SURROGATE_ESCAPE.sub(b"\\\\u0041", item), type=msgspec.Raw)
            except msgspec.DecodeError:
                raise _unparsable(index) from None
            except RecursionError:
                pass
        except RecursionError:
            pass
    return items


def _too_many(most: int, found: str | None = None) -> ApiError:
    return ApiError(
        413,
        f"more than {most:,} check-ins in one request" + (f" ({found})" if found else ""),
        field=settings.SETTINGS["serve_max_items"].env,
    )


def _check_json(text: bytes) -> None:
    try:
        msgspec.json.decode(_SURROGATE_ESCAPE.sub(b"\\\\u0041", text), type=msgspec.Raw)
    except msgspec.DecodeError:
        raise _unparsable() from None
    except RecursionError:
        pass  # nested deeper than msgspec follows: the item's own decoding rejects it


def _empty() -> ApiError:
    return ApiError(400, "the body is empty: send one check-in, an array of them, or JSON Lines")


def _unparsable(index: int | None = None) -> ApiError:
    where = "" if index is None else f" (at item {index})"
    return ApiError(400, f"the body is not JSON{where}: send one check-in (an object) or an array of them", index=index)


def read_items(body: bytes, kind: str, source: str, most: int) -> list[Checkin | Refused]:
    """A body's items, each a check-in or what refuses it; ApiError when the body itself
    cannot be read (400) or holds too many (413)."""
    return decode_items(_split(body, kind, most=most), source)


def decode_items(raws: list[bytes], source: str) -> list[Checkin | Refused]:
    """Each item decoded alone: a check-in, or what refuses it; ApiError 413 as soon as
    the check-ins have more apps in all than ``serve_max_request_apps``.

    Saying which field of a rejected item is wrong takes an exact reader about twenty
    times as slow as the decoder: a request gets it for its first ``_EXPLAINED``
    bytes of rejected items. An item that does not fit in what is left is first tried
    by the decoder alone, and if that refuses it, it is rejected in a few words.
    """
    max_bytes = settings.get("max_checkin_bytes")
    max_apps = settings.get("max_apps")
    most_apps = settings.get("serve_max_request_apps")
    apps = 0
    explained = 0
    items: list[Checkin | Refused] = []
    for raw in raws:
        if explained + len(raw) > _EXPLAINED and len(raw) <= max_bytes and not _decodes(raw):
            items.append(Refused(_unexplained(raw)))
            continue
        item = decode_one(raw, source, max_bytes=max_bytes, max_apps=max_apps)
        if isinstance(item, Refused):
            if item.device is None:  # refused by its decoding: the exact reader said why
                explained += len(raw)
        else:
            apps += len(item.apps)
            if apps > most_apps:
                env = settings.SETTINGS["serve_max_request_apps"].env
                raise ApiError(413, f"more than {most_apps:,} apps in one request's check-ins", field=env)
        items.append(item)
    return items


def _decodes(raw: bytes) -> bool:
    try:
        _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return True


def _unexplained(raw: bytes) -> BadInput:
    return BadInput(
        f"not a check-in appban can read ({len(raw):,} bytes); which field is wrong is said only for the first "
        f"{_EXPLAINED // 1024:,} KiB of a request's rejected items (appban import appban says it for any)"
    )


def decode_one(raw: bytes, source: str, *, max_bytes: int, max_apps: int) -> Checkin | Refused:
    """A check-in, or the refusal of it, with its device's id once the check-in was read."""
    if len(raw) > max_bytes:
        env = settings.SETTINGS["max_checkin_bytes"].env
        return Refused(BadInput(f"{len(raw):,} bytes, more than {max_bytes:,} ({env})"))
    try:
        checkin = decode_json(raw, source=source)
    except BadInput as exc:
        return Refused(exc)
    if checkin.source != source:
        why = f"names source {checkin.source!r}, but the token is source {source!r}'s"
        return Refused(BadInput(why, field="source"), checkin.device.id)
    if len(checkin.apps) > max_apps:
        env = settings.SETTINGS["max_apps"].env
        why = f"{plural(len(checkin.apps), 'app')}, more than {max_apps:,} ({env})"
        return Refused(BadInput(why, field="apps"), checkin.device.id)
    return checkin


class Buckets:
    """A token bucket per source (check-ins per second, with a burst), in this process.

    A request is let in while its source's bucket is not in debt, and then takes as
    many tokens as it has check-ins, so a batch larger than the burst still passes,
    and its source then waits for the debt to drain (``Retry-After``).
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._level: dict[str, tuple[float, float]] = {}  # source -> (tokens, when)

    def _now_level(self, source: str) -> float:
        now = time.monotonic()
        tokens, when = self._level.get(source, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        self._level[source] = (tokens, now)
        return tokens

    def check(self, source: str) -> None:
        if not self.rate:
            return
        tokens = self._now_level(source)
        if tokens < 1:
            wait = max(1, math.ceil((1 - tokens) / self.rate))
            raise ApiError(
                429,
                f"source {source!r} posts more than {self.rate:g} check-ins a second; retry in {wait} s",
                field=settings.SETTINGS["serve_checkin_rate"].env,
                headers={"Retry-After": str(wait)},
            )

    def take(self, source: str, count: int) -> None:
        if not self.rate:
            return
        tokens = self._now_level(source)
        self._level[source] = (tokens - count, time.monotonic())
