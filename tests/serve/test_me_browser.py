"""The employee's page in a real browser: Debian's chromium driven by Playwright, against
a real ``appban serve`` process on a free port.

For each state (violating, blocked, compliant, exempt, and a person whose device and
app are named with markup and 10 KB of text): the page loads, says the right words,
is usable with the keyboard alone (Tab and Enter: "I removed it", "Request an
exemption"), what it did is in the database, no request leaves the server's origin,
and hostile names are text. Also: expired and forged links, and posts without the
right form token or from another site are refused with nothing written.
"""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from helpers_serve import ServeProcess
from playwright.sync_api import Browser, Page, sync_playwright
from test_me import HOSTILE, PEOPLE, PeopleDatabase, people_database

from helpers_cli import snapshot

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> PeopleDatabase:
    return people_database(tmp_path_factory.mktemp("people-browser"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Site:
    db: PeopleDatabase
    url: str
    page: Page
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def open(self, who: str, **kwargs: Any) -> int:
        response = self.page.goto(self.url + self.db.path_of(who, **kwargs))
        assert response is not None
        return response.status

    def off_origin(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(self.url + "/")]


@pytest.fixture
def site(template: PeopleDatabase, tmp_path: Path, browser: Browser) -> Iterator[Site]:
    copy = tmp_path / "people.db"
    copy.write_bytes(Path(template.path).read_bytes())
    db = PeopleDatabase(str(copy), template.now)
    with ServeProcess(db.path, "--port", "0") as server:
        context = browser.new_context()
        page = context.new_page()
        running = Site(db, server.url, page)
        page.on("request", lambda r: running.requests.append(r.url))
        page.on("dialog", lambda d: (running.dialogs.append(d.message), d.dismiss()))
        try:
            yield running
        finally:
            context.close()


# -- keyboard only -----------------------------------------------------------------------


def tab_to(page: Page, test: str, *, limit: int = 300) -> None:
    """Press Tab until ``test`` (a JavaScript function of the focused element) holds."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"(e => ({test})(e))(document.activeElement)"):
            return
    raise AssertionError(f"Tab never reached an element where {test}")


def _in_form(action: str, policy: str) -> str:
    return (
        "e => e.tagName === 'BUTTON' && e.form !== null"
        f" && e.form.elements.namedItem('action').value === '{action}'"
        f" && e.form.elements.namedItem('policy').value === '{policy}'"
    )


def press_i_removed_it(page: Page, policy: str) -> None:
    tab_to(page, _in_form("removed", policy))
    assert_focus_visible(page)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def request_exemption(page: Page, policy: str, reason: str, *, one_device: bool = False) -> None:
    if one_device:
        tab_to(page, f"e => e.id === 'device-{policy}'")
        page.keyboard.press("ArrowDown")  # the first of the person's devices
    tab_to(page, f"e => e.id === 'reason-{policy}'")
    assert_focus_visible(page)
    page.keyboard.type(reason)
    tab_to(page, _in_form("requested", policy), limit=3)
    assert_focus_visible(page)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def assert_focus_visible(page: Page) -> None:
    style = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()"
    )
    assert style[0] != "none" and style[1] >= 2, style


# -- what every page must be -----------------------------------------------------------------

_CONTRAST = """
() => {
  const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) low.push(el.tagName + ' ' + ratio.toFixed(2) + ' ' + el.textContent.slice(0, 40));
  }
  return low;
}
"""

_STRUCTURE = """
() => {
  const levels = [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => +h.tagName[1]);
  const unlabelled = [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.name);
  return {lang: document.documentElement.lang, levels, unlabelled,
          scripts: document.querySelectorAll('script').length,
          images: document.querySelectorAll('img, iframe, object, embed').length};
}
"""


def assert_accessible(page: Page) -> None:
    shape = page.evaluate(_STRUCTURE)
    assert shape["lang"] == "en"
    levels = shape["levels"]
    assert levels and levels[0] == 1 and levels.count(1) == 1, levels
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False)), levels
    assert shape["unlabelled"] == []
    assert shape["scripts"] == 0 and shape["images"] == 0
    assert page.evaluate(_CONTRAST) == []


def assert_clean(site: Site) -> None:
    assert site.off_origin() == []
    assert site.dialogs == []


# -- each state --------------------------------------------------------------------------------


def test_violating_removed_and_asked(site: Site) -> None:
    assert site.open("violating") == 200
    page = site.page
    text = page.inner_text("main")
    assert "Banned app found" in text and "WeChat seen by intune on your iPhone 11" in text
    assert "Remove WeChat from this device before" in text
    assert_accessible(page)
    press_i_removed_it(page, "wechat-mail")
    assert "your word that the app is gone is recorded" in page.inner_text("main")
    ann = site.db.device("ANN-IPHONE")
    rows = site.db.rows("SELECT policy_id, device_id, person FROM attestations")
    assert rows == [("wechat-mail", ann, PEOPLE["violating"])]
    state = site.db.rows("SELECT state FROM states WHERE policy_id = 'wechat-mail' AND device_id = ?", (ann,))
    assert state == [("compliant",)]
    request_exemption(page, "wechat-mail", "I talk to suppliers in China on WeChat", one_device=True)
    assert "Your request is sent" in page.inner_text("main")
    rows = site.db.rows("SELECT policy_id, person, device_id, reason, state FROM exemption_requests")
    assert rows == [
        ("wechat-mail", PEOPLE["violating"], ann, "I talk to suppliers in China on WeChat", "pending"),
    ]
    assert_clean(site)


def test_blocked_removed_and_asked(site: Site) -> None:
    assert site.open("blocked") == 200
    page = site.page
    text = page.inner_text("main")
    assert "Mail blocked" in text and "TikTok seen by intune on your iPhone XR" in text
    assert "it has passed" in text
    assert_accessible(page)
    press_i_removed_it(page, "tiktok-mail")
    bob = site.db.device("BOB-IPHONE")
    assert site.db.rows("SELECT device_id, person FROM attestations") == [(bob, PEOPLE["blocked"])]
    # The attestation lifts the block (until an inventory says otherwise).
    assert site.db.rows("SELECT decision FROM devices WHERE id = ?", (bob,)) == [("allow",)]
    request_exemption(page, "tiktok-mail", "Social media team")
    rows = site.db.rows("SELECT policy_id, device_id, reason FROM exemption_requests")
    assert rows == [("tiktok-mail", None, "Social media team")]
    assert_clean(site)


@pytest.mark.parametrize(
    ("who", "words"),
    [
        ("compliant", ["Compliant", "shows no banned app", "Nothing needs your attention now."]),
        ("exempt", ["Exempt until", "Social media team: runs the company account"]),
    ],
)
def test_nothing_to_remove_but_a_request_can_be_made(site: Site, who: str, words: list[str]) -> None:
    assert site.open(who) == 200
    page = site.page
    text = page.inner_text("main")
    for w in words:
        assert w in text, w
    assert page.get_by_role("button", name="I removed it").count() == 0
    assert_accessible(page)
    request_exemption(page, "wechat-mail", "Just in case")
    assert site.db.rows("SELECT person, reason FROM exemption_requests") == [(PEOPLE[who], "Just in case")]
    assert_clean(site)


def test_hostile_names_are_shown_as_text(site: Site) -> None:
    assert site.open("hostile") == 200
    page = site.page
    assert page.get_by_text(HOSTILE, exact=False).count() >= 2  # the device's model, the app's name
    assert page.locator("script").count() == 0
    assert "10,240 characters" in page.inner_text("main")
    # 10 KB names wrap inside the page rather than pushing it sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert_accessible(page)
    press_i_removed_it(page, "wechat-mail")
    eve = site.db.device("EVE-IPHONE")
    assert site.db.rows("SELECT device_id, person FROM attestations") == [(eve, PEOPLE["hostile"])]
    request_exemption(page, "wechat-mail", "<3 this app")
    assert site.db.rows("SELECT reason FROM exemption_requests") == [("<3 this app",)]
    assert page.locator("script").count() == 0
    assert_clean(site)


# -- refused ------------------------------------------------------------------------------


def test_a_refused_request_is_told_at_its_form(site: Site, browser: Browser) -> None:
    """With script off, as some people browse: a refused reason comes back with the
    error in plain words at the top, naming the policy; inside the form that was sent,
    tied to the field, which is marked invalid and has the focus."""
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        response = page.goto(site.url + site.db.path_of("violating"))
        assert response is not None and response.status == 200
        before = snapshot(site.db.path)
        tab_to(page, "e => e.id === 'reason-tiktok-mail'")  # the second policy's form, far down
        page.keyboard.type("<b>need it</b>")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert snapshot(site.db.path) == before
        alert = page.inner_text("[role=alert]")
        assert "your request for an exemption from “TikTok is not permitted" in alert
        assert "a reason can't contain “<” followed by a letter" in alert and "markup" not in alert
        focused = page.evaluate(
            "(() => { const e = document.activeElement; const d = e.getAttribute('aria-describedby');"
            " return [e.id, e.value, e.getAttribute('aria-invalid'),"
            " d && document.getElementById(d).textContent]; })()"
        )
        assert focused[:3] == ["reason-tiktok-mail", "<b>need it</b>", "true"]
        assert "a reason can't contain" in focused[3]
        assert page.locator("#reason-wechat-mail").get_attribute("aria-invalid") is None
        # The top message links to the field; the field's own error is visible beside it.
        assert page.locator("[role=alert] a").get_attribute("href") == "#reason-tiktok-mail"
        assert_accessible(page)
    finally:
        context.close()


@pytest.mark.parametrize("how", ["expired", "forged"])
def test_a_bad_link_shows_only_that_it_is_bad(site: Site, how: str) -> None:
    if how == "expired":
        status = site.open("violating", at=site.db.now - timedelta(days=31))
    else:
        good = site.db.path_of("violating")
        response = site.page.goto(site.url + good[:-2] + ("xx" if not good.endswith("xx") else "yy"))
        assert response is not None
        status = response.status
    assert status == 404
    text = site.page.inner_text("main")
    assert "This link is not valid or has expired: ask your helpdesk or use the newest link from your mail" in text
    assert "Ann" not in text
    assert_accessible(site.page)
    assert_clean(site)


@pytest.mark.parametrize("tamper", ["missing", "wrong"])
def test_a_form_without_its_token_is_refused(site: Site, tamper: str) -> None:
    assert site.open("violating") == 200
    page = site.page
    if tamper == "missing":
        page.evaluate("document.querySelectorAll('input[name=form]').forEach(e => e.remove())")
    else:
        page.evaluate("document.querySelectorAll('input[name=form]').forEach(e => e.value = 'AAAAAAAAAAAAAAAAAAAAAA')")
    before = snapshot(site.db.path)
    tab_to(page, _in_form("removed", "wechat-mail"))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "This form is out of date or did not come from your page" in page.inner_text("main")
    assert snapshot(site.db.path) == before
    assert_clean(site)


def test_a_form_on_another_site_is_refused_even_with_the_token(site: Site, tmp_path: Path) -> None:
    """Another site's page posting to the employee's page, with the right form token
    (as if it leaked): the browser says where the post comes from, and it is refused."""
    assert site.open("violating") == 200
    path = site.db.path_of("violating")
    token = site.page.locator("input[name=form]").first.get_attribute("value")
    device = site.db.device("ANN-IPHONE")
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "index.html").write_text(
        f'<!DOCTYPE html><html lang="en"><body><form method="post" action="{site.url}{path}">'
        f'<input type="hidden" name="form" value="{token}"><input type="hidden" name="action" value="removed">'
        f'<input type="hidden" name="policy" value="wechat-mail"><input type="hidden" name="device" value="{device}">'
        "<button>Win a prize</button></form></body></html>",
        encoding="utf-8",
    )
    handler = partial(_Quiet, directory=str(evil))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        try:
            before = snapshot(site.db.path)
            # localhost and 127.0.0.1 are different sites to a browser.
            site.page.goto(f"http://localhost:{other.server_address[1]}/index.html")
            tab_to(site.page, "e => e.tagName === 'BUTTON'")
            with site.page.expect_navigation():
                site.page.keyboard.press("Enter")
            assert "This form came from another site" in site.page.inner_text("main")
            assert snapshot(site.db.path) == before
        finally:
            other.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
