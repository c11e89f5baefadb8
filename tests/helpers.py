"""Test helpers: an app client on a fresh data directory, uploads of the fixture files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

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
