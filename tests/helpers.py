"""Test helpers: an app client on a fresh data directory, uploads of the fixture files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from igpt_server.app import create_app
from igpt_server.settings import Settings

DATA = Path(__file__).parent / "data"


def make_client(data_dir: Path, **settings: Any) -> TestClient:
    return TestClient(create_app(Settings(data_dir=data_dir, **settings)))


def new_session(client: TestClient) -> str:
    response = client.post("/api/sessions")
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def upload(client: TestClient, session: str, name: str, **form: str) -> dict[str, Any]:
    with (DATA / name).open("rb") as fh:
        response = client.post(f"/api/sessions/{session}/files", files={"file": (name, fh)}, data=form)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def dog_session(client: TestClient) -> tuple[str, str, str]:
    """A new session with dog_on_bench.png and its hand-made dog mask: ``(session, image, mask)`` paths."""
    sid = new_session(client)
    image = upload(client, sid, "dog_on_bench.png")["path"]
    mask = upload(client, sid, "dog_on_bench_mask.png", kind="mask", parent=image)["path"]
    return sid, image, mask


def fetch_array(client: TestClient, artifact: dict[str, Any]) -> np.ndarray:
    """The pixels of an artifact as the API serves them (``HxWx3``/``HxWx4`` uint8, or ``HxW`` for a mask)."""
    return np.asarray(Image.open(io.BytesIO(client.get(artifact["url"]).content)))


def call_tool(client: TestClient, sid: str, tool: str, **args: Any) -> Any:
    """``POST /api/tools/{tool}`` in session ``sid`` with ``args``; the response."""
    return client.post(f"/api/tools/{tool}", json={"session": sid, "args": args})
