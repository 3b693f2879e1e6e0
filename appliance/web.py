"""The browser softphone the node hands to web pages (docs/WEBRTC.md).

``web/softphone`` bundles JsSIP with a small phone API into one static file,
``dist/softphone.js``, built by ``scripts/setup.sh`` (npm + esbuild). The node's HTTP
API will serve it; until then this is where it is.
"""

from __future__ import annotations

from pathlib import Path

SOFTPHONE_DIR = Path(__file__).resolve().parent.parent / "web" / "softphone"
SOFTPHONE_JS = SOFTPHONE_DIR / "dist" / "softphone.js"
SOFTPHONE_TEST_PAGE = SOFTPHONE_DIR / "test.html"
