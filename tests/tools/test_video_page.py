"""The page's video module (frontend/video.js): its pure functions, run by Node (skipped without it).

The player itself (scrubbing, frame stepping, pointing at a paused frame) needs a browser; the
server side of pointing at a paused frame (the frame tool, then a click gesture on the frame)
is covered by tests/tools/test_video.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "frontend" / "video.js"

SCRIPT = """
import { clock, isVideo, videoPoint } from "%s";
const video = {
  videoWidth: 640, videoHeight: 272,
  getBoundingClientRect: () => ({ left: 10, top: 20, width: 1280, height: 1000 }),
};
console.log(JSON.stringify({
  clock: [clock(0), clock(12.5), clock(75.04)],
  isVideo: [isVideo({ kind: "video" }), isVideo({ kind: "image" }), isVideo(null)],
  // the picture is letterboxed: 1280 wide, 544 tall, centred vertically (228 px bars)
  centre: videoPoint(video, 10 + 640, 20 + 500),
  corner: videoPoint(video, 10, 20 + 228),
  bar: videoPoint(video, 10 + 640, 20 + 100),
}));
"""


def test_clock_and_pointing_on_a_letterboxed_video() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed; it runs the page's modules outside a browser")
    done = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT % MODULE.as_uri()], capture_output=True, text=True, check=True
    )
    out = json.loads(done.stdout)
    assert out["clock"] == ["0:00.00", "0:12.50", "1:15.04"]
    assert out["isVideo"] == [True, False, False]
    assert out["centre"] == {"x": 320, "y": 136}
    assert out["corner"] == {"x": 0, "y": 0}
    assert out["bar"] is None
