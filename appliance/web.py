"""Files the node hands to web browsers (docs/WEBRTC.md).

``web/softphone`` bundles JsSIP with a small phone API into one static file,
``dist/softphone.js``, built by ``scripts/setup.sh`` (npm + esbuild). ``web/desk`` is the
agent desktop (plain HTML, CSS and JS, no build step; its label catalogs in
``web/desk/i18n``). The node's HTTP API serves both under ``/desk/``.
"""

from __future__ import annotations

from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
SOFTPHONE_DIR = WEB_DIR / "softphone"
SOFTPHONE_JS = SOFTPHONE_DIR / "dist" / "softphone.js"
SOFTPHONE_TEST_PAGE = SOFTPHONE_DIR / "test.html"
DESK_DIR = WEB_DIR / "desk"
DESK_LANGUAGES = ("en", "zh-Hans", "zh-Hant")  # web/desk/i18n/<language>.json
