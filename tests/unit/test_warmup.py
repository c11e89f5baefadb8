"""The start-up warm-up: every part with a hook loads in the background and says its state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from igpt_server.controller import warmup
from igpt_server.services import Services
from igpt_server.settings import Settings
from igpt_tools import edges
from igpt_tools.ocr import READER_KEY
from tests.controller_support import Rig


class _Services:
    def __init__(self, rig: Rig, speech: Any) -> None:
        self.registry, self.settings, self.controller, self.speech = rig.registry, rig.settings, rig.controller, speech
        self.pool = rig.runner.pool


class _Speech:
    loaded = 0

    def warm_up(self) -> None:
        type(self).loaded += 1


class _BrokenSpeech:
    def warm_up(self) -> None:
        raise OSError("no model file at /nowhere")


def test_parts_with_hooks_load_and_report(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "data")
    status = warmup.warm_up(_Services(rig, _Speech()))
    assert _Speech.loaded == 1 and status["speech"] == "ready"
    assert status["llm"] == "not needed"  # no LLM configured in the rig: nothing to load
    assert warmup.still_loading() == []
    rig.close()


def test_a_failed_warm_up_is_reported_not_raised(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "data")
    status = warmup.warm_up(_Services(rig, _BrokenSpeech()))
    assert status["speech"].startswith("failed: OSError: no model file")
    rig.close()


def test_the_embedded_tier_loads_ocr_the_segmenter_and_speech_into_the_pool(tmp_path: Path) -> None:
    services = Services.build(Settings(data_dir=tmp_path / "data"))
    try:
        status = warmup.warm_up(services)  # what the app schedules on its background executor
        assert {part: status[part] for part in ("ocr", "segment", "speech")} == {
            "ocr": "ready",
            "segment": "ready",
            "speech": "ready",
        }
        assert warmup.loading_status() == status and warmup.still_loading() == []
        loaded = {m.key for m in services.pool.status().models if m.state == "loaded"}
        assert {READER_KEY, edges.MODEL_KEY, services.speech.pool_key()} <= loaded
    finally:
        services.close()
