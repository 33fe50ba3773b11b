"""What text appban accepts from the outside: free text, identifiers, e-mail addresses.

Every input (check-ins, CSV files, policy files, command-line reasons) goes through
these checks, so that what is stored can be shown in a terminal or a web page as
is, and two values that look alike are equal:

- free text (names, versions, reasons) may not hold control characters, bidi
  controls or markup; it may hold emoji, zero-width joiners included;
- identifiers (device ids, app ids, owners) may not hold any character a reader
  cannot see: controls, format characters (Unicode ``Cf``: zero-width spaces,
  joiners, bidi controls, the byte-order mark), other default-ignorable code
  points, or white space other than the ASCII space;
- ActiveSync DeviceIds are printable ASCII without spaces;
- e-mail addresses are identifiers of one shape, lower-cased in ASCII only
  (``normalise_email``), as the gate compares user names;
- files and bodies are UTF-8: a byte that is not is named by its offset
  (``NotUtf8``), the same way in every format.
"""

from __future__ import annotations

import re
import unicodedata

from appban.errors import BadInput

# No control, bidi or invisible characters: two addresses that look alike must be equal.
EMAIL = re.compile(
    r"^[^@\s<>()\[\],;:\"\\\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)
# Markup opens with "<" and a letter, "/", "!" or "?": "<3" is fine, "<script>" is not.
_MARKUP = re.compile(r"<[A-Za-z/!?]")
# Controls, bidi controls (Unicode's Bidi_Control: the marks U+061C, U+200E, U+200F,
# the embeddings and overrides U+202A-202E, the isolates U+2066-2069), and lone
# surrogates (a JSON "\\ud800" escape decodes to one: no character at all, and no
# encoding can store it).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# Characters that show nothing yet str.isprintable() lets through (it already
# refuses Cc, Cf, Zs but the space, Zl, Zp, Cs, Co and Cn):
# - default-ignorable code points (Unicode's DerivedCoreProperties,
#   Default_Ignorable_Code_Point): the combining grapheme joiner, the Hangul fillers
#   (U+115F, U+1160, U+3164, U+FFA0), Khmer inherent vowels, Mongolian and other
#   variation selectors;
# - symbols whose glyph is blank: U+2800 BRAILLE PATTERN BLANK and U+1D159 MUSICAL
#   SYMBOL NULL NOTEHEAD, used to make names that look empty or like another.
_IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\ufe00-\ufe0f\uffa0\U0001d159\U000e0100-\U000e01ef]"
)
# MS-ASHTTP's DeviceId is a string of 7-bit ASCII (a binary id from the base64
# query form is written as hex); nothing in it may be invisible or a space.
EAS_DEVICE_ID = re.compile(r"[!-~]+")
# RFC 5321's limit on a forward path, the longest address that can receive mail.
MAX_EMAIL = 254
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


class NotUtf8(BadInput):
    """Bytes that are not UTF-8, at ``offset`` bytes from the start of the file (or body).

    The offset is the one a hex viewer shows; readers that read a file in parts
    (a line at a time) add where the part starts.
    """

    def __init__(self, offset: int, *, file: str | None = None, line: int | None = None, field: str | None = None):
        self.offset = offset
        super().__init__(f"not UTF-8 at byte offset {offset}", file=file, line=line, field=field)

    def shifted(self, by: int, *, file: str | None = None, line: int | None = None) -> NotUtf8:
        """The same error for a part that starts ``by`` bytes into a file, at ``line``."""
        return NotUtf8(self.offset + by, file=file or self.file, line=line or self.line, field=self.field)


def ascii_lower(text: str) -> str:
    """``text`` with A-Z lower-cased and every other character kept as it is.

    Never ``str.lower()`` or ``casefold()`` for names: they fold characters such as
    the Kelvin sign U+212A into ASCII ``k``, so two different addresses would be one.
    """
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def normalise_email(text: str, field: str) -> str:
    """An e-mail address as appban keeps it: stripped, A-Z lower-cased, checked.

    Refused (BadInput naming ``field``): an address longer than MAX_EMAIL, one not
    of the EMAIL shape, and one holding a character a reader cannot see.
    """
    address = ascii_lower(text.strip())
    if len(address) > MAX_EMAIL:
        raise BadInput(f"an e-mail address is at most {MAX_EMAIL} characters, not {len(address)}", field=field)
    if not EMAIL.match(address):
        raise BadInput(f"not an e-mail address: {address[:80]!r}", field=field)
    if not address.isascii():
        check_identifier(address, field)  # what EMAIL lets through: blank symbols, variation selectors
    return address


def check_text(value: str | None, field: str) -> None:
    """Free text: no control or bidi characters, no markup."""
    if value is None:
        return
    if _CONTROL.search(value):
        raise BadInput("control character in text", field=field)
    if _MARKUP.search(value):
        raise BadInput("markup in text", field=field)


def check_identifier(value: str | None, field: str) -> None:
    """An identifier: every character visible (the ASCII space aside), no markup."""
    if value is None:
        return
    if not value.isprintable() or (not value.isascii() and _IGNORABLE.search(value)):
        bad = next(ch for ch in value if not ch.isprintable() or _IGNORABLE.match(ch))
        raise BadInput(f"{_describe(bad)} in an identifier", field=field)
    if _MARKUP.search(value):
        raise BadInput("markup in text", field=field)


def check_eas_device_id(value: str, field: str) -> None:
    """An ActiveSync DeviceId: printable ASCII, no spaces."""
    if not EAS_DEVICE_ID.fullmatch(value):
        check_identifier(value, field)  # names an invisible character when there is one
        raise BadInput("an ActiveSync DeviceId is printable ASCII without spaces", field=field)


def _describe(ch: str) -> str:
    """``invisible character U+200B (ZERO WIDTH SPACE)``; controls are named as such."""
    code = f"U+{ord(ch):04X}"
    category = unicodedata.category(ch)
    if category == "Cc" or "\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069":
        return f"control character {code}"
    name = unicodedata.name(ch, "")
    if category in ("Zs", "Zl", "Zp"):
        kind = "white space"
    elif category in ("Co", "Cn", "Cs"):
        kind = "unassigned or private-use character"
    else:
        kind = "invisible character"
    return f"{kind} {code} ({name})" if name else f"{kind} {code}"


def identifiers_clean(joined: str) -> bool:
    """True when no identifier in ``joined`` (identifiers joined by spaces) fails check_identifier."""
    return (
        joined.isprintable()
        and (joined.isascii() or not _IGNORABLE.search(joined))
        and ("<" not in joined or not _MARKUP.search(joined))
    )


def text_clean(joined: str) -> bool:
    """True when no text in ``joined`` fails check_text."""
    # ASCII text is free of controls exactly when it is printable (the space is).
    no_control = joined.isprintable() if joined.isascii() else not _CONTROL.search(joined)
    return no_control and ("<" not in joined or not _MARKUP.search(joined))


# -- text a third party chose, kept rather than refused -------------------------------------
# An app's name, version and id are chosen by its maker or by the device's user, never by
# an admin: refusing them would cost the device its whole inventory (and let a user name
# an app to evade). They are made safe instead: what the checks above refuse becomes a
# visible stand-in, so the value stays readable and can no longer be markup or hide.
REPLACEMENT = "\ufffd"  # U+FFFD REPLACEMENT CHARACTER, for a character that cannot be shown
_ANGLES = str.maketrans({"<": "\u2039", ">": "\u203a"})  # single angle quotation marks: ‹ ›


def safe_text(value: str) -> str:
    """``value`` made to pass ``check_text``: controls, bidi controls and lone surrogates
    become U+FFFD; where markup would open, every ``<`` and ``>`` becomes ``‹`` and ``›``."""
    if text_clean(value):
        return value
    made = _CONTROL.sub(REPLACEMENT, value)
    return made.translate(_ANGLES) if _MARKUP.search(made) else made


def safe_identifier(value: str) -> str:
    """``value`` made to pass ``check_identifier``: every character a reader cannot see
    (controls, format and default-ignorable characters, white space but the ASCII
    space) becomes U+FFFD; markup as in ``safe_text``."""
    if identifiers_clean(value):
        return value
    made = "".join(
        REPLACEMENT if not ch.isprintable() or (not ch.isascii() and _IGNORABLE.match(ch)) else ch for ch in value
    )
    return made.translate(_ANGLES) if _MARKUP.search(made) else made
