"""What the synthetic fleet has installed: common apps per platform, and TikTok's editions.

App lists are built once as a few hundred shared "profiles" and reused by every
device: a check-in then costs one list, not thirty structs, which is what lets the
demo run half a million employees on a laptop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from appban.inventory.checkin import App

# Common, harmless apps by the identifiers each platform's inventory reports
# (Android package names, iOS bundle ids, macOS bundle ids, Windows package ids).
_COMMON: dict[str, tuple[tuple[str, str, str], ...]] = {
    "ios": (
        ("com.microsoft.Office.Outlook", "Outlook", "4.44.0"),
        ("com.microsoft.skype.teams", "Teams", "2.0.17"),
        ("com.google.chrome.ios", "Chrome", "83.0.4103.88"),
        ("com.burbn.instagram", "Instagram", "148.0"),
        ("com.facebook.Facebook", "Facebook", "276.0"),
        ("net.whatsapp.WhatsApp", "WhatsApp", "2.20.70"),
        ("com.spotify.client", "Spotify", "8.5.66"),
        ("com.atebits.Tweetie2", "Twitter", "8.27"),
        ("com.linkedin.LinkedIn", "LinkedIn", "9.16.1"),
        ("com.google.Maps", "Google Maps", "5.46"),
        ("com.ubercab.UberClient", "Uber", "3.422.10000"),
        ("com.netflix.Netflix", "Netflix", "12.38.0"),
        ("com.amazon.Amazon", "Amazon Shopping", "14.13.0"),
        ("com.tinyspeck.chatlyio", "Slack", "20.07.10"),
        ("us.zoom.videomeetings", "Zoom", "5.1.2"),
        ("com.google.GoogleMobile", "Google", "120.0"),
        ("com.toyopagroup.picaboo", "Snapchat", "10.84.5"),
        ("com.yourcompany.PPClient", "PayPal", "7.32.0"),
        ("com.duolingo.DuolingoMobile", "Duolingo", "6.66.0"),
        ("com.google.Gmail", "Gmail", "6.0.200628"),
        ("com.getdropbox.Dropbox", "Dropbox", "200.2"),
        ("com.microsoft.skydrive", "OneDrive", "11.52.8"),
        ("com.microsoft.azureauthenticator", "Authenticator", "6.4.12"),
        ("com.okta.mobile", "Okta Verify", "5.3.0"),
        ("pinterest", "Pinterest", "8.26"),
        ("com.reddit.Reddit", "Reddit", "2020.26.0"),
        ("com.airbnb.app", "Airbnb", "20.27"),
        ("com.google.ios.youtube", "YouTube", "15.27.5"),
        ("com.hammerandchisel.discord", "Discord", "33.0"),
        ("ph.telegra.Telegraph", "Telegram", "6.3"),
        ("com.squareup.cash", "Cash App", "3.20"),
        ("com.nytimes.NYTimes", "NYTimes", "8.21"),
        ("com.weather.TWC", "The Weather Channel", "12.2"),
        ("com.strava.stravaride", "Strava", "143.0"),
        ("com.getsomeheadspace.headspace", "Headspace", "3.95"),
        ("com.venmo.touch.v2", "Venmo", "8.2.0"),
        ("com.yelp.yelpiphone", "Yelp", "20.27"),
        ("com.lyft.ios", "Lyft", "6.33"),
        ("com.evernote.iPhone.Evernote", "Evernote", "8.23"),
        ("com.shazam.Shazam", "Shazam", "13.15"),
        ("com.google.Drive", "Google Drive", "4.2020.26"),
        ("com.microsoft.Office.Word", "Word", "2.39"),
        ("com.microsoft.Office.Excel", "Excel", "2.39"),
        ("com.apple.itunesu", "iTunes U", "3.8"),
        ("com.zillow.ZillowMap", "Zillow", "12.2"),
        ("com.chase", "Chase", "4.158"),
        ("com.audible.iphone", "Audible", "3.26"),
        ("com.hulu.plus", "Hulu", "7.8"),
    ),
    "android": (
        ("com.microsoft.office.outlook", "Outlook", "4.2027.1"),
        ("com.microsoft.teams", "Teams", "1416/1.0.0.2020"),
        ("com.android.chrome", "Chrome", "83.0.4103.106"),
        ("com.instagram.android", "Instagram", "148.0.0.33.121"),
        ("com.facebook.katana", "Facebook", "277.0.0.40.123"),
        ("com.whatsapp", "WhatsApp", "2.20.196"),
        ("com.spotify.music", "Spotify", "8.5.66.827"),
        ("com.twitter.android", "Twitter", "8.54.0"),
        ("com.linkedin.android", "LinkedIn", "4.1.475"),
        ("com.google.android.apps.maps", "Maps", "10.44.1"),
        ("com.ubercab", "Uber", "4.320.10002"),
        ("com.netflix.mediaclient", "Netflix", "7.64.0"),
        ("com.amazon.mShop.android.shopping", "Amazon Shopping", "20.13.0.100"),
        ("com.Slack", "Slack", "20.07.10.0"),
        ("us.zoom.videomeetings", "Zoom", "5.1.28652.0629"),
        ("com.google.android.googlequicksearchbox", "Google", "11.18.8"),
        ("com.snapchat.android", "Snapchat", "10.84.5.0"),
        ("com.paypal.android.p2pmobile", "PayPal", "7.23.1"),
        ("com.duolingo", "Duolingo", "4.76.2"),
        ("com.google.android.gm", "Gmail", "2020.06.28"),
        ("com.dropbox.android", "Dropbox", "200.2.6"),
        ("com.microsoft.skydrive", "OneDrive", "6.9.1"),
        ("com.azure.authenticator", "Authenticator", "6.2007.4464"),
        ("com.okta.android.auth", "Okta Verify", "5.7.0"),
        ("com.pinterest", "Pinterest", "8.26.0"),
        ("com.reddit.frontpage", "Reddit", "2020.26.0"),
        ("com.airbnb.android", "Airbnb", "20.27"),
        ("com.google.android.youtube", "YouTube", "15.26.34"),
        ("com.discord", "Discord", "33.0"),
        ("org.telegram.messenger", "Telegram", "6.3.0"),
        ("com.squareup.cash", "Cash App", "3.20.1"),
        ("com.nytimes.android", "NYTimes", "9.6.0"),
        ("com.weather.Weather", "The Weather Channel", "10.20.0"),
        ("com.strava", "Strava", "143.10"),
        ("com.getsomeheadspace.android", "Headspace", "3.95.0"),
        ("com.venmo", "Venmo", "8.2.0"),
        ("com.yelp.android", "Yelp", "20.27.0"),
        ("me.lyft.android", "Lyft", "6.33.3"),
        ("com.evernote", "Evernote", "8.13.2"),
        ("com.shazam.android", "Shazam", "11.2.0"),
        ("com.google.android.apps.docs", "Drive", "2.20.261"),
        ("com.microsoft.office.word", "Word", "16.0.13001"),
        ("com.microsoft.office.excel", "Excel", "16.0.13001"),
        ("com.samsung.android.spay", "Samsung Pay", "4.1.24"),
        ("com.zillow.android.zillowmap", "Zillow", "11.5.0"),
        ("com.chase.sig.android", "Chase", "4.160"),
        ("com.audible.application", "Audible", "2.55.0"),
        ("com.hulu.plus", "Hulu", "4.17.0"),
    ),
    "macos": (
        ("com.google.Chrome", "Google Chrome", "83.0.4103.116"),
        ("com.microsoft.Outlook", "Microsoft Outlook", "16.38"),
        ("com.microsoft.teams", "Microsoft Teams", "1.3.00.14564"),
        ("us.zoom.xos", "zoom.us", "5.1.1"),
        ("com.tinyspeck.slackmacgap", "Slack", "4.7.0"),
        ("com.microsoft.Word", "Microsoft Word", "16.38"),
        ("com.microsoft.Excel", "Microsoft Excel", "16.38"),
        ("com.microsoft.Powerpoint", "Microsoft PowerPoint", "16.38"),
        ("org.mozilla.firefox", "Firefox", "78.0.2"),
        ("com.spotify.client", "Spotify", "1.1.36"),
        ("com.getdropbox.dropbox", "Dropbox", "102.4.431"),
        ("com.microsoft.VSCode", "Visual Studio Code", "1.47.0"),
        ("com.apple.dt.Xcode", "Xcode", "11.5"),
        ("com.docker.docker", "Docker", "2.3.0.3"),
        ("com.jetbrains.intellij", "IntelliJ IDEA", "2020.1.3"),
        ("com.googlecode.iterm2", "iTerm", "3.3.11"),
        ("com.1password.1password", "1Password 7", "7.6"),
        ("com.okta.mobile.auth-service-extension", "Okta Verify", "1.2"),
        ("com.microsoft.onenote.mac", "Microsoft OneNote", "16.38"),
        ("com.apple.iWork.Keynote", "Keynote", "10.1"),
        ("com.apple.iWork.Pages", "Pages", "10.1"),
        ("com.postmanlabs.mac", "Postman", "7.27.1"),
    ),
    "windows": (
        ("Google.Chrome", "Google Chrome", "83.0.4103.116"),
        ("Microsoft.Office.Outlook", "Microsoft Outlook", "16.0.12827"),
        ("Microsoft.Teams", "Microsoft Teams", "1.3.00.13565"),
        ("Zoom.Zoom", "Zoom", "5.1.27838"),
        ("SlackTechnologies.Slack", "Slack", "4.7.0"),
        ("Microsoft.Office.Word", "Microsoft Word", "16.0.12827"),
        ("Microsoft.Office.Excel", "Microsoft Excel", "16.0.12827"),
        ("Microsoft.Office.PowerPoint", "Microsoft PowerPoint", "16.0.12827"),
        ("Mozilla.Firefox", "Mozilla Firefox", "78.0.2"),
        ("Spotify.Spotify", "Spotify", "1.1.36"),
        ("Dropbox.Dropbox", "Dropbox", "102.4.431"),
        ("Microsoft.VisualStudioCode", "Visual Studio Code", "1.47.0"),
        ("Adobe.AdobeAcrobatReaderDC", "Adobe Acrobat Reader DC", "20.009.20074"),
        ("Notepad++.Notepad++", "Notepad++", "7.8.8"),
        ("7zip.7zip", "7-Zip", "19.00"),
        ("Git.Git", "Git", "2.27.0"),
        ("Microsoft.Edge", "Microsoft Edge", "83.0.478.64"),
        ("Citrix.Workspace", "Citrix Workspace", "20.6.0.38"),
        ("Cisco.AnyConnect", "Cisco AnyConnect", "4.8.03052"),
        ("Microsoft.OneDrive", "OneDrive", "20.084.0426"),
    ),
}
_COMMON["ipados"] = _COMMON["ios"]

# What a "managed apps only" source (app protection on a personal phone) can see.
_MANAGED: dict[str, tuple[str, ...]] = {
    "ios": (
        "com.microsoft.Office.Outlook",
        "com.microsoft.skype.teams",
        "com.microsoft.azureauthenticator",
        "com.okta.mobile",
        "com.microsoft.skydrive",
        "com.microsoft.Office.Word",
        "com.microsoft.Office.Excel",
    ),
    "android": (
        "com.microsoft.office.outlook",
        "com.microsoft.teams",
        "com.azure.authenticator",
        "com.okta.android.auth",
        "com.microsoft.skydrive",
        "com.microsoft.office.word",
        "com.microsoft.office.excel",
    ),
}
_MANAGED["ipados"] = _MANAGED["ios"]

# TikTok as the catalog knows it (catalog.yaml), weighted by how often each edition
# turns up: the global app by far, then Lite, the Asian "trill" builds and Douyin.
TIKTOK: dict[str, tuple[tuple[str, str, str, float], ...]] = {
    "android": (
        ("com.zhiliaoapp.musically", "TikTok", "16.5.4", 0.74),
        ("com.zhiliaoapp.musically.go", "TikTok Lite", "16.1.1", 0.10),
        ("com.ss.android.ugc.trill", "TikTok", "16.5.3", 0.08),
        ("com.ss.android.ugc.trill.go", "TikTok Lite", "15.9.0", 0.03),
        ("com.ss.android.ugc.aweme", "抖音", "11.5.0", 0.05),
    ),
    "ios": (
        ("com.zhiliaoapp.musically", "TikTok", "16.5.0", 0.86),
        ("com.ss.iphone.ugc.Ame", "TikTok", "16.4.5", 0.09),
        ("com.ss.iphone.ugc.Aweme", "抖音", "11.5.0", 0.05),
    ),
}
TIKTOK["ipados"] = TIKTOK["ios"]

_PROFILES = 256


@dataclass(frozen=True)
class AppPools:
    """Shared app lists to hand out: full inventories, managed-only ones, TikTok builds."""

    full: dict[str, list[list[App]]]
    managed: dict[str, list[list[App]]]
    tiktok: dict[str, tuple[list[App], list[float]]]


def build_pools(rng: random.Random) -> AppPools:
    full: dict[str, list[list[App]]] = {}
    managed: dict[str, list[list[App]]] = {}
    for platform, rows in _COMMON.items():
        apps = {i: App(id=i, name=n, version=v) for i, n, v in rows}
        low, high = (20, 40) if platform not in ("macos", "windows") else (12, 20)
        full[platform] = [rng.sample(list(apps.values()), rng.randint(low, high)) for _ in range(_PROFILES)]
        if platform in _MANAGED:
            ids = _MANAGED[platform]
            managed[platform] = [[apps[i] for i in rng.sample(ids, rng.randint(3, len(ids)))] for _ in range(32)]
    tiktok = {
        platform: (
            [App(id=i, name=n, version=v) for i, n, v, _w in rows],
            [w for *_rest, w in rows],
        )
        for platform, rows in TIKTOK.items()
    }
    return AppPools(full, managed, tiktok)
