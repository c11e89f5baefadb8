"""What the e2e tests share: where the browser is, what the fake microphone says, the server handle."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "e2e"
CHROMIUM = Path(os.environ.get("IGPT_E2E_CHROMIUM", "/usr/bin/chromium"))
#: what the fake microphone says (a clip spoken by espeak-ng; after the browser's opus
#: round trip, tiny.en hears "Remove the dog." as "Remove the card.", but this exactly)
SPOKEN = "Remove it."
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class LiveServer:
    """A running server: its base URL and its data directory."""

    url: str
    data_dir: Path
