"""Identity and exposure: API keys, session ownership, trusted hosts, same-site writes, no
server path or exception text in any answer, and a CLI that will not publish an open server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from igpt_server import cli
from igpt_server.app import create_app
from igpt_server.auth import KeyRing, hash_key, is_loopback
from igpt_server.settings import Settings
from tests.api.live_server import live_server
from tests.helpers import DATA, make_client

ALICE, BOB = "igpt_alice-key-for-tests", "igpt_bob-key-for-tests"
KEYS = {"alice": hash_key(ALICE), "bob": hash_key(BOB)}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == code and body["error"]["message"]
    return dict(body["error"])


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path / "data", api_keys=KEYS) as client:
        yield client


def new_session(client: TestClient, key: str) -> str:
    r = client.post("/api/sessions", headers=bearer(key))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


# keys ---------------------------------------------------------------------------------------


def test_health_tells_the_page_whether_to_ask_for_a_key(client: TestClient, keyed: TestClient) -> None:
    assert client.get("/api/health").json()["auth"] == "none"
    assert keyed.get("/api/health").json()["auth"] == "keys"  # public: no key needed to ask


def test_without_a_key_the_api_is_401_auth_required_but_the_page_loads(keyed: TestClient) -> None:
    r = keyed.post("/api/sessions")
    assert_error(r, 401, "auth_required")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_error(keyed.get("/api/tools"), 401, "auth_required")
    assert_error(keyed.get("/metrics"), 401, "auth_required")
    assert keyed.get("/").status_code == 200
    assert keyed.get("/openapi.json").status_code == 200
    assert keyed.get("/api/ready").status_code == 200


def test_a_wrong_key_is_401_auth_invalid(keyed: TestClient) -> None:
    assert_error(keyed.post("/api/sessions", headers=bearer("igpt_not-a-key")), 401, "auth_invalid")
    assert_error(keyed.post("/api/sessions", cookies={"igpt_key": "igpt_not-a-key"}), 401, "auth_invalid")


def test_a_key_works_as_bearer_or_as_the_igpt_key_cookie(keyed: TestClient) -> None:
    sid = new_session(keyed, ALICE)
    with (DATA / "corgi.jpeg").open("rb") as fh:
        r = keyed.post(f"/api/sessions/{sid}/files", files={"file": ("c.jpeg", fh)}, headers=bearer(ALICE))
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    keyed.cookies.set("igpt_key", ALICE)  # what the page sets for <img src> and downloads
    try:
        assert keyed.get(url).content == (DATA / "corgi.jpeg").read_bytes()
    finally:
        keyed.cookies.clear()


def test_a_session_belongs_to_the_key_that_made_it(keyed: TestClient) -> None:
    sid = new_session(keyed, ALICE)
    with (DATA / "corgi.jpeg").open("rb") as fh:
        art = keyed.post(f"/api/sessions/{sid}/files", files={"file": ("c.jpeg", fh)}, headers=bearer(ALICE)).json()
    assert keyed.get(f"/api/sessions/{sid}", headers=bearer(ALICE)).status_code == 200
    # bob cannot see, read, change, use or delete it: exactly as if it did not exist
    for r in (
        keyed.get(f"/api/sessions/{sid}", headers=bearer(BOB)),
        keyed.get(art["url"], headers=bearer(BOB)),
        keyed.put(f"/api/sessions/{sid}/active", json={"image": art["path"]}, headers=bearer(BOB)),
        keyed.post("/api/tools/ocr", json={"session": sid, "args": {"image_path": art["path"]}}, headers=bearer(BOB)),
        keyed.delete(f"/api/sessions/{sid}", headers=bearer(BOB)),
    ):
        err = assert_error(r, 404, "not_found")
        assert "alice" not in err["message"]
    assert keyed.get(f"/api/sessions/{sid}", headers=bearer(ALICE)).status_code == 200


def test_keys_are_stored_hashed_and_compared_by_hash() -> None:
    with pytest.raises(ValueError, match="sha256"):
        Settings(api_keys={"alice": ALICE})
    ring = KeyRing(KEYS)
    assert ring.identify(ALICE) == "alice" and ring.identify(BOB) == "bob"
    assert ring.identify(ALICE + "x") is None
    assert Settings(api_keys=f"alice={KEYS['alice']}").api_keys == {"alice": KEYS["alice"]}


def test_the_cli_prints_a_new_key_with_its_hash(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["--make-key", "carol"])
    out = capsys.readouterr().out
    key = next(line.strip() for line in out.splitlines() if line.strip().startswith("igpt_"))
    assert f"IGPT_API_KEYS=carol={hash_key(key)}" in out


# exposure -----------------------------------------------------------------------------------


def test_the_cli_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="without API keys"):
        cli.main(["--host", "0.0.0.0", "--data-dir", str(tmp_path / "data")])
    with pytest.raises(SystemExit, match="no api_keys"):
        cli.check_exposure(Settings(data_dir=tmp_path, host="0.0.0.0", auth="keys"), insecure=False)
    # allowed: keys, or an explicit --insecure, or loopback
    cli.check_exposure(Settings(data_dir=tmp_path, host="0.0.0.0", api_keys=KEYS), insecure=False)
    cli.check_exposure(Settings(data_dir=tmp_path, host="0.0.0.0"), insecure=True)
    cli.check_exposure(Settings(data_dir=tmp_path, host="127.0.0.1"), insecure=False)
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.5")


def test_an_untrusted_host_header_is_refused(tmp_path: Path) -> None:
    with make_client(tmp_path / "data", trusted_hosts=["127.0.0.1", "localhost", "*.example.org"]) as client:
        assert_error(client.get("/api/health", headers={"Host": "evil.test"}), 400, "host_refused")
        assert_error(client.post("/api/sessions", headers={"Host": "rebind.evil.test:7860"}), 400, "host_refused")
        assert client.get("/api/health", headers={"Host": "127.0.0.1:7860"}).status_code == 200
        assert client.get("/api/health", headers={"Host": "igpt.example.org"}).status_code == 200


def test_a_cross_site_write_is_refused_and_a_same_site_one_is_not(client: TestClient) -> None:
    assert_error(client.post("/api/sessions", headers={"Origin": "http://evil.test"}), 403, "origin_refused")
    assert_error(client.post("/api/sessions", headers={"Sec-Fetch-Site": "cross-site"}), 403, "origin_refused")
    assert client.post("/api/sessions", headers={"Origin": "http://testserver"}).status_code == 201
    assert client.get("/api/health", headers={"Origin": "http://evil.test"}).status_code == 200  # reads are CORS's job


def test_configured_cors_origins_may_call_the_api(tmp_path: Path) -> None:
    with make_client(tmp_path / "data", cors_origins=["https://app.example.org"]) as client:
        preflight = client.options(
            "/api/sessions",
            headers={"Origin": "https://app.example.org", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.org"
        r = client.post("/api/sessions", headers={"Origin": "https://app.example.org"})
        assert r.status_code == 201 and r.headers["access-control-allow-origin"] == "https://app.example.org"
        assert_error(client.post("/api/sessions", headers={"Origin": "https://other.test"}), 403, "origin_refused")


# what errors show ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "form"),
    [
        (b"this is not a picture", {"kind": "image"}),
        (b"\x00\x01 neither sound nor video", {"kind": "audio"}),
        (b"RIFF\x00\x00\x00\x00WAVEfmt junk", {}),
        (b"\x1a\x45\xdf\xa3 broken webm", {"kind": "video"}),
    ],
)
def test_no_error_names_a_server_path(client: TestClient, tmp_path: Path, content: bytes, form: dict) -> None:
    sid = client.post("/api/sessions").json()["id"]
    r = client.post(f"/api/sessions/{sid}/files", files={"file": ("x.bin", content)}, data=form)
    assert 400 <= r.status_code < 500, r.text
    text = r.text
    for leak in (str(tmp_path), ".incoming", str(Path.cwd()), "/tmp/", "/root", "Traceback"):
        assert leak not in text, text


def test_an_unexpected_fault_is_a_500_with_a_request_id_and_no_exception_text(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data"))
    with TestClient(app, raise_server_exceptions=False) as client:
        _fault_is_hidden(client)


def _fault_is_hidden(client: TestClient) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    sid = client.post("/api/sessions").json()["id"]
    original = services.store.get

    def broken(session_id: str) -> Any:  # a fault deep in the server, with a path in its text
        raise RuntimeError(f"database file {services.store.data_dir.resolve()}/igpt.sqlite3 is corrupt")

    services.store.get = broken
    try:
        r = client.get(f"/api/sessions/{sid}", headers={"X-Request-ID": "probe-42"})
    finally:
        services.store.get = original
    err = assert_error(r, 500, "internal_error")
    assert r.headers["x-request-id"] == "probe-42" and err["detail"] == {"request_id": "probe-42"}
    assert "probe-42" in err["message"]
    assert "RuntimeError" not in r.text and "corrupt" not in r.text and "sqlite3" not in r.text


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    first, second = client.get("/api/health"), client.get("/api/nothing-here")
    assert len(first.headers["x-request-id"]) >= 8
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert client.get("/api/health", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"] != (
        "bad id with spaces"
    )


# per-key limits ---------------------------------------------------------------------------


def test_past_its_rate_a_key_gets_429_with_retry_after_and_other_keys_do_not(tmp_path: Path) -> None:
    with make_client(tmp_path / "data", api_keys=KEYS, rate_limit_per_minute=3) as client:
        for _ in range(3):
            assert client.get("/api/tools", headers=bearer(ALICE)).status_code == 200
        r = client.get("/api/tools", headers=bearer(ALICE))
        assert_error(r, 429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert client.get("/api/tools", headers=bearer(BOB)).status_code == 200
        assert client.get("/api/health").status_code == 200  # public, but still counted per address


def test_past_its_concurrent_turns_a_key_gets_429_too_many_turns(tmp_path: Path) -> None:
    backends = {"segment": "opencv", "remove": "opencv", "move": "opencv"}
    settings = Settings(data_dir=tmp_path / "data", api_keys=KEYS, max_concurrent_turns=1, backends=backends)
    with live_server(settings) as url, httpx.Client(base_url=url, timeout=300) as http:
        calls = {}
        for name, key in (("alice", ALICE), ("alice2", ALICE), ("bob", BOB)):
            sid = http.post("/api/sessions", headers=bearer(key)).json()["id"]
            with (DATA / "dog_on_bench.png").open("rb") as fh:
                image = http.post(
                    f"/api/sessions/{sid}/files", files={"file": ("d.png", fh)}, headers=bearer(key)
                ).json()["path"]
            with (DATA / "dog_on_bench_mask.png").open("rb") as fh:
                mask = http.post(
                    f"/api/sessions/{sid}/files",
                    files={"file": ("m.png", fh)},
                    data={"kind": "mask", "parent": image},
                    headers=bearer(key),
                ).json()["path"]
            calls[name] = {"session": sid, "args": {"image_path": image, "mask_path": mask}}
        first: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: first.update(r=http.post("/api/tools/remove", json=calls["alice"], headers=bearer(ALICE)))
        )
        worker.start()
        deadline = time.monotonic() + 60
        while 'igpt_tool_running{tool="remove"} 1.0' not in http.get("/metrics", headers=bearer(BOB)).text:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        second = http.post("/api/tools/remove", json=calls["alice2"], headers=bearer(ALICE))
        worker.join()
        assert_error(second, 429, "too_many_turns")
        assert first["r"].status_code == 200
        assert http.post("/api/tools/remove", json=calls["bob"], headers=bearer(BOB)).status_code == 200
