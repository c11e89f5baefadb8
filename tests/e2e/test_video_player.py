"""The video player in the browser: open a clip, scrub to a moment, click the paused picture;
that frame becomes the active image and what was clicked is selected on it. Videos (the upload
and a tool's result) have a thumbnail in the strip (a decoded frame, a play mark, the duration)
that opens them in the player."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.pages import TURN_TIMEOUT_MS, send

DATA = Path(__file__).resolve().parents[1] / "data"

pytestmark = pytest.mark.e2e


VIDEO_THUMBS = ".strip .thumb[data-kind=video]"


def _thumb_shows_a_frame(page: Any, index: int, duration: str) -> None:
    """The ``index``-th video thumbnail shows a decoded frame, the play mark and ``duration``."""
    thumb = page.locator(VIDEO_THUMBS).nth(index)
    thumb.wait_for(state="visible")
    page.wait_for_function(
        """([sel, i]) => { const v = document.querySelectorAll(sel)[i].querySelector('video');
                          return v.classList.contains('ready') && v.readyState >= 2 && v.videoWidth > 0; }""",
        arg=[VIDEO_THUMBS, index],
        timeout=30_000,
    )
    assert thumb.locator(".play").is_visible()
    assert thumb.locator(".duration").inner_text() == duration
    # the frame is a picture, not a black box (bikes.mp4 is a street in daylight)
    mean = page.evaluate(
        """([sel, i]) => { const v = document.querySelectorAll(sel)[i].querySelector('video');
                          const c = document.createElement('canvas'); c.width = 64; c.height = 32;
                          const g = c.getContext('2d'); g.drawImage(v, 0, 0, 64, 32);
                          const d = g.getImageData(0, 0, 64, 32).data; let s = 0;
                          for (let k = 0; k < d.length; k += 4) s += d[k] + d[k + 1] + d[k + 2];
                          return s / (3 * 64 * 32); }""",
        [VIDEO_THUMBS, index],
    )
    assert mean > 20, f"the thumbnail's frame is black (mean {mean:.1f})"


def test_pausing_on_a_frame_and_clicking_selects_on_that_frame(page: Any, shot: Any) -> None:
    page.set_input_files("#file-input", str(DATA / "bikes.mp4"))
    player = page.locator(".video-player")
    player.wait_for(state="visible")
    page.wait_for_function("document.querySelector('.video-player video').readyState >= 1")
    if page.evaluate("document.querySelector('.video-player video').videoWidth") == 0:
        pytest.skip("this Chromium build cannot decode H.264 (no proprietary codecs)")
    # the upload has its thumbnail in the strip: a frame, the play mark, 0:10
    assert page.locator(VIDEO_THUMBS).count() == 1
    _thumb_shows_a_frame(page, 0, "0:10")
    page.evaluate(
        """() => { const s = document.querySelector('.video-player input[type=range]');
                   s.value = '4'; s.dispatchEvent(new Event('input')); }"""
    )
    page.wait_for_function("Math.abs(document.querySelector('.video-player video').currentTime - 4) < 0.05")
    page.locator(".video-player button[title^='One frame forward']").click()
    page.wait_for_function("document.querySelector('.video-player video').currentTime > 4.02")
    shot(page, "video-01-paused")
    box = page.locator(".video-player video").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("(window.igpt.state.shown.image || '').includes('frame_4_04s')")
    page.wait_for_function("Boolean(window.igpt.state.mask)")
    assert page.evaluate("window.igpt.stage.size") == {"width": 640, "height": 272}
    assert not player.is_visible()
    shot(page, "video-02-frame-selected")

    # the done-when of the video issue: the person says it, the blurred clip comes back and plays in the chat
    send(page, "blur him in the whole video")
    result = page.locator(".log video.video-result").last
    result.wait_for(state="attached", timeout=TURN_TIMEOUT_MS)
    last = "[...document.querySelectorAll('.log video.video-result')].pop()"
    page.wait_for_function(f"() => {last}.readyState >= 1", timeout=60_000)
    assert page.evaluate(f"{last}.duration") > 9  # the whole clip (bikes.mp4 is 10 s), not a piece
    shot(page, "video-03-blurred-in-chat")

    # the result has its own thumbnail, after the upload and the frame, tagged with its tool
    page.wait_for_function(f"document.querySelectorAll('{VIDEO_THUMBS}').length === 2")
    _thumb_shows_a_frame(page, 1, "0:10")
    result_thumb = page.locator(VIDEO_THUMBS).nth(1)
    assert "track" in result_thumb.locator(".tag").inner_text()
    result_path = result_thumb.get_attribute("data-path")
    shot(page, "video-04-result-thumbnail")
    # a click opens it in the player over the canvas
    result_thumb.click()
    player.wait_for(state="visible")
    page.wait_for_function(
        f"document.querySelector('.video-player video').src.includes({result_path!r}.split('/').pop())"
    )
    page.wait_for_function("document.querySelector('.video-player video').readyState >= 1")
    shot(page, "video-05-result-in-player")
