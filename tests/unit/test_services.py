"""Background work owned by the server: one executor that ``Services`` owns and shuts down,
the upload hooks of the tools (captions, precomputation) run on it, and nothing runs after
``close()``."""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path

import pytest

from igpt_server import media
from igpt_server.services import BACKGROUND_WORKERS, BackgroundClosed, Services, record_note
from igpt_server.settings import Settings
from igpt_server.store import ArtifactKind, history
from igpt_server.tooling.interface import Backend, ImagePath, Tool, ToolArgs, ToolContext, ToolOutput, UploadNote
from igpt_server.tooling.registry import ToolRegistry
from igpt_tools.vqa import latest_caption
from tests.helpers import DATA


class BrightnessArgs(ToolArgs):
    image_path: ImagePath


class BrightnessTool(Tool):
    """A real small tool whose upload hook notes an image's mean brightness (0..255)."""

    name = "brightness"
    description = "Mean brightness of an image."
    args_model = BrightnessArgs

    def run(self, args: BrightnessArgs, ctx: ToolContext, backend: Backend) -> ToolOutput:
        value = float(ctx.read_image(args.image_path).mean())
        return ToolOutput(text=f"Mean brightness {value:.1f}", data={"brightness": value})

    def on_image_upload(self, image_path: str, ctx: ToolContext, backend: Backend) -> UploadNote | None:
        value = self.run(BrightnessArgs(image_path=image_path), ctx, backend).data["brightness"]
        return UploadNote(f"{image_path} has mean brightness {value:.1f}", {"event": "brightness", "value": value})


class PlainTool(BrightnessTool):
    """The same tool without an upload hook."""

    name = "plain"
    on_image_upload = Tool.on_image_upload  # type: ignore[assignment]


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return Services.build(Settings(data_dir=tmp_path / "data"))


def add_image(services: Services, session: str, name: str) -> str:
    image = media.read_image_rgb(DATA / name)
    data = media.encode_png(image)
    return services.store.add_artifact(session, ArtifactKind.image, data, ext="png", stem="photo").path


def test_a_background_job_runs_off_the_calling_thread_and_hands_back_its_result(services: Services) -> None:
    caller = threading.get_ident()
    future = services.submit_background("answer", lambda: (threading.get_ident(), 42))
    worker, value = future.result(timeout=10)
    assert value == 42 and worker != caller
    services.close()


def test_a_failing_job_is_logged_and_its_future_holds_the_error(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("the model file is truncated")

    future = services.submit_background("warm-up", broken)
    assert isinstance(future.exception(timeout=10), RuntimeError)
    assert any("background job warm-up failed" in r.getMessage() for r in caplog.records)
    assert services.submit_background("after", lambda: "still works").result(timeout=10) == "still works"
    services.close()


def test_close_waits_for_running_jobs_cancels_queued_ones_and_refuses_new_ones(services: Services) -> None:
    release = threading.Event()
    finished: list[str] = []

    def blocking(name: str) -> str:
        release.wait(10)
        time.sleep(0.05)
        finished.append(name)
        return name

    running = [services.submit_background(f"job{i}", partial(blocking, f"job{i}")) for i in range(BACKGROUND_WORKERS)]
    queued = services.submit_background("queued", lambda: blocking("queued"))
    assert set(services.background.running()) == {*(f"job{i}" for i in range(BACKGROUND_WORKERS)), "queued"}
    closer = threading.Thread(target=services.close)
    closer.start()
    time.sleep(0.2)
    assert closer.is_alive()  # waiting for the running jobs
    release.set()
    closer.join(10)
    assert not closer.is_alive()
    assert [f.result() for f in running] == [f"job{i}" for i in range(BACKGROUND_WORKERS)]
    assert queued.cancelled() and "queued" not in finished
    with pytest.raises(BackgroundClosed, match="shutting down"):
        services.submit_background("late", lambda: None)


def test_an_upload_runs_the_upload_hook_of_every_available_tool_that_has_one(services: Services) -> None:
    services.registry = ToolRegistry([BrightnessTool([Backend()]), PlainTool([Backend()])], services.settings)
    session = services.store.create().id
    image = add_image(services, session, "dog.jpg")
    futures = services.after_image_upload(session, image)
    assert list(futures) == ["brightness"]  # the plain tool has no hook
    futures["brightness"].result(timeout=30)
    (event,) = [m for m in services.store.get(session).messages if m.role == "event"]
    expected = float(media.read_image_rgb(DATA / "dog.jpg").mean())
    assert event.data == {"event": "brightness", "value": pytest.approx(expected)}
    assert event.content == f"{image} has mean brightness {expected:.1f}"
    services.close()


def test_a_failing_upload_hook_leaves_the_session_unchanged(services: Services) -> None:
    services.registry = ToolRegistry([BrightnessTool([Backend()])], services.settings)
    session = services.store.create().id
    fake = services.store.add_artifact(session, ArtifactKind.image, b"not an image", ext="png", stem="broken").path
    before = services.store.get(session).messages
    future = services.after_image_upload(session, fake)["brightness"]
    assert future.exception(timeout=30) is not None
    assert services.store.get(session).messages == before
    services.close()


def test_the_builtin_tools_schedule_their_upload_work_through_the_hook(services: Services) -> None:
    hooked = {tool.name for tool, _ in services.registry.upload_hooks()}
    available = set(services.registry.available_names())
    assert hooked <= available  # only available tools run on uploads
    assert "caption" not in hooked  # no vision backend on the embedded tier
    services.close()


def test_an_upload_caption_is_written_as_a_typed_caption_note_by_the_one_writer(services: Services) -> None:
    session = services.store.create().id
    image = add_image(services, session, "dog_on_bench.png")
    caption = UploadNote(  # the shape CaptionTool.on_image_upload returns
        f"Caption of {image}: a dog on a bench",
        {"event": "caption", "image_path": image, "caption": "a dog on a bench", "backend": "qwen2-vl"},
    )
    record_note(services.store, session, caption)
    record_note(services.store, session, UploadNote("brightness 93.1", {"event": "brightness", "value": 93.1}))

    messages = services.store.messages(session)
    records = history.read(messages)
    assert [type(r).__name__ for _, r in records] == ["CaptionNote"]  # the other note is a plain event
    message, note = records[0]
    assert isinstance(note, history.CaptionNote) and message.role == "event"
    assert (note.image_path, note.caption, note.backend) == (image, "a dog on a bench", "qwen2-vl")
    assert message.content == caption.text
    assert latest_caption(services.store.get(session), image) == "a dog on a bench"  # the scene's reader
    assert messages[-1].role == "event" and messages[-1].data == {"event": "brightness", "value": 93.1}
