"""The words people use for video reach the video tools through the controller's lexicon
(built from each tool's ``words``), and do not take image requests away from the image tools;
the auxiliary control fills the video tools' arguments: the time the words name, the person's
own words for narrate, and the video of the frame the person is on (real clips, real store)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from igpt_server import media
from igpt_server.controller import Controller
from igpt_server.controller.lexicon import Vocabulary
from igpt_server.controller.parse import parse_request
from igpt_server.controller.recovery import AuxiliaryControl, Correction
from igpt_server.controller.scene import Scene
from igpt_server.models.pool import ModelPool
from igpt_server.perception.timecode import find_time
from igpt_server.settings import Settings
from igpt_server.store import Artifact, ArtifactKind, SessionStore
from igpt_server.tooling.registry import ToolRegistry
from igpt_server.tooling.runner import ToolRunner
from igpt_tools import builtin_tools
from igpt_tools.video.narrate import NarrateArgs
from tests.video_clips import BIKES, BUNNY


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return Vocabulary.of([(t.name, t.words, []) for t in builtin_tools(Settings())])


@pytest.mark.parametrize(
    ("request_text", "tool"),
    [
        ("blur him in the whole video", "track"),
        ("pixelate this face throughout the clip", "track"),
        ("remove the car from the video", "track"),
        ("explain the highlight of this video in a funny way", "narrate"),
        ("narrate this clip", "narrate"),
        ("find the highlight", "highlight"),
        ("show me the frame at 0:12", "frame"),
        ("what does he say", "transcribe"),
        ("what is she saying in the video", "transcribe"),
        ("transcribe this video", "transcribe"),
    ],
)
def test_video_requests_name_the_video_tool_first(vocabulary: Vocabulary, request_text: str, tool: str) -> None:
    parsed = parse_request(request_text, vocabulary.tool_rules, vocabulary.values, vocabulary.verb_rules)
    assert parsed.tool_candidates()[0] == tool


@pytest.mark.parametrize(
    ("request_text", "tool"),
    [("remove it", "remove"), ("what does the sign say", "ocr"), ("describe this image", "vqa")],
)
def test_image_requests_stay_with_the_image_tools(vocabulary: Vocabulary, request_text: str, tool: str) -> None:
    parsed = parse_request(request_text, vocabulary.tool_rules, vocabulary.values, vocabulary.verb_rules)
    assert parsed.tool_candidates()[0] == tool


# ---- the auxiliary control fills the video tools' arguments (issue 15, item 6) -------------


class VideoRig:
    """A real session store, the built-in tools and a controller with no LLM, on ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.settings = Settings(data_dir=data_dir)
        self.store = SessionStore(data_dir)
        self.registry = ToolRegistry(builtin_tools(self.settings), self.settings)
        runner = ToolRunner(self.registry, self.store, self.settings, ModelPool(self.settings))
        self.controller = Controller(self.settings, self.store, self.registry, runner, None)
        self.session = self.store.create().id

    def upload(self, file: Path) -> str:
        """Register a real clip as a video artifact (as the upload route does) and return its path."""
        info = media.probe_video(file)
        art = self.store.add_artifact(
            self.session,
            ArtifactKind.video,
            file.read_bytes(),
            ext="mp4",
            stem=file.stem,
            width=info.width,
            height=info.height,
        )
        return art.path

    def correct(self, tool: str, message: str, proposed: dict[str, Any] | None = None) -> Correction:
        parsed = parse_request(message, self.aux.vocabulary.tool_rules, self.aux.vocabulary.values)
        return self.aux.correct(tool, proposed or {}, parsed, Scene(self.store.get(self.session)))

    @property
    def aux(self) -> AuxiliaryControl:
        return AuxiliaryControl(self.registry)

    def active_image(self) -> Artifact:
        state = self.store.get(self.session)
        artifact = state.artifact(state.active_image or "")
        assert artifact is not None
        return artifact


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[VideoRig]:
    rig = VideoRig(tmp_path / "data")
    yield rig
    rig.store.close()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("show me the frame at 0:04", 4.0),
        ("pause at 12 seconds", 12.0),
        ("the frame at 1:02.5", 62.5),
        ("grab a still at 1 minute 5 seconds", 65.0),
        ("at 1:00:02", 3602.0),
        ("at 12.5s", 12.5),
        ("make it 2 times bigger", None),
        ("move it 20 px to the left", None),
    ],
)
def test_the_words_name_a_time_in_seconds(text: str, seconds: float | None) -> None:
    assert find_time(text) == seconds
    assert parse_request(text).time_s == seconds


def test_show_me_the_frame_at_0_04_takes_the_frame_at_4_seconds(rig: VideoRig) -> None:
    clip = rig.upload(BIKES)
    turn = rig.controller.chat(rig.session, "show me the frame at 0:04")
    assert [s.tool for s in turn.steps] == ["frame"]
    step = turn.steps[0]
    assert step.args == {"video_path": clip, "time": 4.0}
    assert {"video_path", "time"} <= set(step.recovered)
    frame = rig.active_image()
    assert frame.parent == clip
    assert 3.9 <= frame.meta["time_s"] <= 4.0  # the frame on screen at 4 s (25 fps)


def test_the_video_is_the_one_of_the_frame_the_person_is_on_not_the_newest(rig: VideoRig) -> None:
    bikes = rig.upload(BIKES)
    bunny = rig.upload(BUNNY)
    rig.controller.chat(rig.session, f"show me the frame at 0:04 of {bikes}")
    assert rig.active_image().parent == bikes
    # an edit of the frame still belongs to the clip
    edited = rig.store.add_artifact(
        rig.session,
        ArtifactKind.image,
        rig.store.artifact_file(rig.session, rig.active_image().path).read_bytes(),
        ext="png",
        stem="edited",
        parent=rig.active_image().path,
    )
    rig.store.update_state(rig.session, active_image=edited.path)
    fixed = rig.correct("highlight", "find the highlight")
    assert fixed.problem is None
    assert fixed.args["video_path"] == bikes != bunny
    assert 3.9 <= fixed.args["time"] <= 4.0  # the moment the person paused on
    assert rig.correct("transcribe", "what does he say").args["audio_path"] == bikes


def test_a_video_added_after_the_frame_is_the_video_meant(rig: VideoRig) -> None:
    bikes = rig.upload(BIKES)
    rig.controller.chat(rig.session, "show me the frame at 0:02")
    assert rig.active_image().parent == bikes
    bunny = rig.upload(BUNNY)
    fixed = rig.correct("highlight", "find the highlight")
    assert fixed.args["video_path"] == bunny
    assert "time" not in fixed.args  # the paused moment was in the other clip


def test_without_a_frame_the_newest_video_is_taken_and_an_invented_path_is_replaced(rig: VideoRig) -> None:
    rig.upload(BIKES)
    bunny = rig.upload(BUNNY)
    fixed = rig.correct("frame", "show me the frame at 3 seconds", {"video_path": "video/deadbeef_x.mp4"})
    assert fixed.args == {"video_path": bunny, "time": 3.0}
    assert fixed.recovered == ["video_path", "time"]


def test_the_words_time_beats_the_llms_and_a_non_time_is_dropped(rig: VideoRig) -> None:
    clip = rig.upload(BIKES)
    said = rig.correct("frame", "pause at 0:07", {"video_path": clip, "time": "0:03"})
    assert said.args["time"] == 7.0 and said.recovered == ["time"]
    kept = rig.correct("frame", "show me that frame", {"video_path": clip, "time": "0:03"})
    assert kept.args["time"] == "0:03" and kept.recovered == []
    dropped = rig.correct("frame", "show me that frame", {"video_path": clip, "time": "soon"})
    assert "time" not in dropped.args and dropped.problem is None


def test_narrate_gets_the_persons_own_words_as_its_request(rig: VideoRig) -> None:
    clip = rig.upload(BIKES)
    message = "explain the highlight of this video in a funny way"
    fixed = rig.correct("narrate", message, {"request": "make a video"})
    assert fixed.problem is None
    assert fixed.args["video_path"] == clip
    assert fixed.args["request"] == message
    assert (fixed.args["style"], fixed.args["part"]) == ("funny", "highlight")
    long = rig.correct("narrate", "narrate this clip " + "and then some more " * 30)
    assert len(long.args["request"]) == NarrateArgs.model_fields["request"].metadata[0].max_length


def test_the_controller_imports_no_tool_module_and_no_torch() -> None:
    code = (
        "import sys; import igpt_server.controller.recovery, igpt_server.controller.parse; "
        "bad = [m for m in sys.modules if m.startswith(('igpt_tools', 'torch', 'av'))]; print(bad); "
        "sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
