"""Write the screenshots of the employee's page in docs/images/ (docs/employee-page.md).

    python docs/screenshots.py

Builds the database the page's tests use (tests/serve/test_me.py: five people, two
policies, near the real clock), starts a real ``appban serve`` on it, and photographs
each state in Debian's chromium through Playwright, 1000 pixels wide:
me-violating.png, me-blocked.png, me-exempt.png, me-compliant.png and me-expired.png.
Not a test: run it again when the page changes, and commit the pictures.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
WIDTH = 1000
# The top of a long page is what a reader of the docs needs; the rest is the same kind.
MAX_HEIGHT = 1600


def main() -> None:
    for folder in ("tests", "tests/serve"):
        sys.path.insert(0, str(ROOT / folder))
    from helpers_serve import ServeProcess
    from playwright.sync_api import sync_playwright
    from test_me import people_database

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("screenshots.py: Debian's chromium is needed (apt-get install chromium)")
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = people_database(Path(tmp))
        shots = {
            "me-violating.png": db.path_of("violating"),
            "me-blocked.png": db.path_of("blocked"),
            "me-exempt.png": db.path_of("exempt"),
            "me-compliant.png": db.path_of("compliant"),
            "me-expired.png": db.path_of("violating", at=db.now - timedelta(days=31)),
        }
        with ServeProcess(db.path, "--port", "0") as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium)
            page = browser.new_page(viewport={"width": WIDTH, "height": 800}, device_scale_factor=1)
            for name, path in shots.items():
                page.goto(server.url + path)
                height = min(MAX_HEIGHT, int(page.evaluate("document.documentElement.scrollHeight")))
                page.set_viewport_size({"width": WIDTH, "height": height})
                page.screenshot(path=str(IMAGES / name))
                page.set_viewport_size({"width": WIDTH, "height": 800})
                print(f"docs/images/{name}")
            browser.close()


if __name__ == "__main__":
    main()
