"""The session and artifact store: sessions, artifacts, state, history, restart, isolation."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from igpt_server.errors import InvalidInput, NotFound
from igpt_server.store import ArtifactKind, SessionStore
from igpt_server.store.artifacts import is_artifact_path


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path)


def test_new_session_is_empty(store: SessionStore) -> None:
    state = store.create()
    assert len(state.id) == 32
    assert state.active_image is None and state.active_mask is None
    assert state.artifacts == [] and state.messages == [] and state.materials == []


def test_artifact_path_names_kind_and_stem(store: SessionStore) -> None:
    sid = store.create().id
    art = store.add_artifact(sid, ArtifactKind.image, b"abc", ext="PNG", stem="my photo!", width=3, height=1)
    assert art.path.startswith("image/") and art.path.endswith("_my_photo.png")
    assert is_artifact_path(art.path)
    assert store.artifact_file(sid, art.path).read_bytes() == b"abc"


def test_parent_must_exist(store: SessionStore) -> None:
    sid = store.create().id
    with pytest.raises(NotFound):
        store.add_artifact(sid, ArtifactKind.mask, b"x", ext="png", parent="image/00000000_nope.png")


@pytest.mark.parametrize(
    "path",
    ["../../etc/passwd", "/etc/passwd", "image/../../x.png", "%2e%2e/image/x.png", "image/zz_x.png", ""],
)
def test_paths_outside_the_registry_are_refused(store: SessionStore, path: str) -> None:
    sid = store.create().id
    with pytest.raises(NotFound):
        store.artifact_file(sid, path)


def test_another_sessions_artifact_is_not_found(store: SessionStore) -> None:
    a, b = store.create().id, store.create().id
    art = store.add_artifact(a, ArtifactKind.image, b"abc", ext="png")
    with pytest.raises(NotFound):
        store.artifact(b, art.path)


def test_wrong_kind_is_invalid(store: SessionStore) -> None:
    sid = store.create().id
    art = store.add_artifact(sid, ArtifactKind.image, b"abc", ext="png")
    with pytest.raises(InvalidInput, match="a mask is needed"):
        store.artifact(sid, art.path, (ArtifactKind.mask,))


def test_state_and_history(store: SessionStore) -> None:
    sid = store.create().id
    img = store.add_artifact(sid, ArtifactKind.image, b"i", ext="png")
    mask = store.add_artifact(sid, ArtifactKind.mask, b"m", ext="png", parent=img.path)
    mat = store.add_artifact(sid, ArtifactKind.material, b"r", ext="png", parent=img.path)
    store.update_state(sid, active_image=img.path, active_mask=mask.path, add_material=mat.path)
    store.append_message(sid, "user", "remove it")
    store.append_message(sid, "tool", "done", {"tool": "remove"})
    state = store.get(sid)
    assert (state.active_image, state.active_mask, state.materials) == (img.path, mask.path, [mat.path])
    assert [(m.seq, m.role) for m in state.messages] == [(1, "user"), (2, "tool")]
    assert state.messages[1].data == {"tool": "remove"}


def test_state_refuses_unknown_artifacts(store: SessionStore) -> None:
    sid = store.create().id
    with pytest.raises(NotFound):
        store.update_state(sid, active_image="image/00000000_ghost.png")


def test_sessions_survive_a_restart(tmp_path: Path) -> None:
    first = SessionStore(tmp_path)
    sid = first.create().id
    art = first.add_artifact(sid, ArtifactKind.image, b"kept", ext="png")
    first.update_state(sid, active_image=art.path)
    first.close()
    second = SessionStore(tmp_path)
    assert second.get(sid).active_image == art.path
    assert second.artifact_file(sid, art.path).read_bytes() == b"kept"


def test_delete_removes_files_and_rows(store: SessionStore) -> None:
    sid = store.create().id
    art = store.add_artifact(sid, ArtifactKind.image, b"x", ext="png")
    file = store.artifact_file(sid, art.path)
    store.delete(sid)
    assert not file.exists()
    with pytest.raises(NotFound):
        store.get(sid)


def test_concurrent_writers_keep_every_message_and_artifact(store: SessionStore) -> None:
    sid = store.create().id

    def work(i: int) -> None:
        for j in range(10):
            store.append_message(sid, "user", f"{i}-{j}")
            store.add_artifact(sid, ArtifactKind.image, f"{i}-{j}".encode(), ext="png")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = store.get(sid)
    assert [m.seq for m in state.messages] == list(range(1, 81))
    assert len({a.path for a in state.artifacts}) == 80
