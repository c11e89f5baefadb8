"""What the browser tests do on the canvas page: open a photo, find where an image pixel is on
the page, read the stage's pixels, wait for the page to be idle, ask the live server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.e2e.live import LiveServer

DATA = Path(__file__).resolve().parents[1] / "data"
DOG = (250.0, 276.0)  # a pixel of the dog in dog_on_bench.png (inside dog_on_bench_mask.png)
DOG_BODY = (240.0, 330.0)  # another pixel of the dog, away from the click's marker
SKY = (60.0, 40.0)  # a pixel of the sky, far from the dog
TURN_TIMEOUT_MS = 240_000  # a chat turn loads the embedded LLM and the tools on first use


# ---- helpers ----------------------------------------------------------------------------


def open_image(page: Any, name: str) -> str:
    """Open a fixture photo with the Open button's file input; returns its artifact path."""
    before = page.evaluate("window.igpt.state.image && window.igpt.state.image.path")
    page.set_input_files("#file-input", str(DATA / name))
    page.wait_for_function(
        "([before, stem]) => { const i = window.igpt.state.image; "
        "return i && i.path !== before && i.path.includes(stem) && window.igpt.state.shown.image === i.path; }",
        arg=[before, Path(name).stem],
    )
    return str(page.evaluate("window.igpt.state.image.path"))


def client_point(page: Any, x: float, y: float) -> tuple[float, float]:
    """Where image pixel (x, y) is on the page now (CSS pixels)."""
    cx, cy = page.evaluate("([x, y]) => window.igpt.stage.imageToClient(x, y)", [x, y])
    return float(cx), float(cy)


def expected_image_point(page: Any, cx: float, cy: float) -> tuple[float, float]:
    """The image pixel under client point (cx, cy), from the stage's current view."""
    view = page.evaluate(
        "(() => { const r = window.igpt.stage.canvas.getBoundingClientRect(); const v = window.igpt.stage.view;"
        " return {left: r.left, top: r.top, scale: v.scale, x: v.x, y: v.y}; })()"
    )
    return (cx - view["left"] - view["x"]) / view["scale"], (cy - view["top"] - view["y"]) / view["scale"]


def canvas_pixel(page: Any, x: float, y: float) -> list[int]:
    """RGBA of the stage canvas where image pixel (x, y) is drawn."""
    return list(
        page.evaluate(
            """([x, y]) => { const s = window.igpt.stage; const dpr = window.devicePixelRatio || 1;
               const dx = (s.view.x + x * s.view.scale) * dpr, dy = (s.view.y + y * s.view.scale) * dpr;
               return Array.from(s.ctx.getImageData(Math.floor(dx), Math.floor(dy), 1, 1).data); }""",
            [x, y],
        )
    )


def wait_idle(page: Any, timeout: float = 60_000) -> None:
    page.wait_for_function("window.igpt.state.busy === 0 && window.igpt.state.turn === null", timeout=timeout)


def select_dog(page: Any) -> dict[str, Any]:
    """Click on the dog; returns the gesture request body the page sent."""
    x, y = client_point(page, *DOG)
    with page.expect_request(lambda r: r.url.endswith("/gesture") and r.method == "POST") as request:
        page.mouse.click(x, y)
    body: dict[str, Any] = request.value.post_data_json
    page.wait_for_function("window.igpt.state.shown.mask !== null", timeout=60_000)
    wait_idle(page)
    return body


def server_session(server: LiveServer, page: Any) -> dict[str, Any]:
    session = page.evaluate("window.igpt.state.session")
    result: dict[str, Any] = httpx.get(f"{server.url}/api/sessions/{session}").json()
    return result


def send(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")
