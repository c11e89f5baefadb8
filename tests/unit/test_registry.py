"""The tool registry: backend choice in order, overrides, and reasons for unavailability."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import Field

from igpt_server.errors import NotFound, ToolUnavailable
from igpt_server.settings import Settings
from igpt_server.tooling import Backend, ImagePath, Tool, ToolArgs, ToolContext, ToolOutput
from igpt_server.tooling.registry import ToolRegistry
from igpt_server.tooling.runner import artifact_fields


class Present(Backend):
    name = "present"
    requires: ClassVar[tuple[str, ...]] = ("json",)


class Missing(Backend):
    name = "missing"
    requires: ClassVar[tuple[str, ...]] = ("no_such_package_igpt",)
    extra = "full"


class EchoArgs(ToolArgs):
    image_path: ImagePath
    words: list[str] = Field(default_factory=list)


class Echo(Tool):
    name = "echo"
    description = "say the image path back"
    args_model = EchoArgs

    def run(self, args: EchoArgs, ctx: ToolContext, backend: Backend) -> ToolOutput:
        return ToolOutput(text=f"{backend.name}:{args.image_path}")


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path, **kw)  # type: ignore[arg-type]


def test_first_available_backend_is_chosen(tmp_path: Path) -> None:
    registry = ToolRegistry([Echo([Missing(), Present()])], settings(tmp_path))
    info = registry.info("echo")
    assert info.available and info.backend == "present"
    assert [b.name for b in info.backends] == ["missing", "present"]
    assert "pip install '.[full]'" in (info.backends[0].reason or "")
    assert registry.backend_for("echo").name == "present"


def test_unavailable_tool_says_what_to_install(tmp_path: Path) -> None:
    registry = ToolRegistry([Echo([Missing()])], settings(tmp_path))
    info = registry.info("echo")
    assert not info.available and "no_such_package_igpt" in (info.reason or "")
    with pytest.raises(ToolUnavailable, match="no_such_package_igpt"):
        registry.backend_for("echo")


def test_override_picks_a_named_backend(tmp_path: Path) -> None:
    registry = ToolRegistry([Echo([Present(), Missing()])], settings(tmp_path, backends={"echo": "missing"}))
    assert not registry.info("echo").available


def test_override_of_unknown_backend_or_tool_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no backend 'gpu'"):
        ToolRegistry([Echo([Present()])], settings(tmp_path, backends={"echo": "gpu"}))
    with pytest.raises(ValueError, match="unknown tools"):
        ToolRegistry([Echo([Present()])], settings(tmp_path, backends={"nope": "x"}))


def test_unknown_tool_lists_the_known_ones(tmp_path: Path) -> None:
    registry = ToolRegistry([Echo([Present()])], settings(tmp_path))
    with pytest.raises(NotFound, match="the tools are echo"):
        registry.get("rm -rf")


def test_schema_and_artifact_fields(tmp_path: Path) -> None:
    info = ToolRegistry([Echo([Present()])], settings(tmp_path)).info("echo")
    assert info.args_schema["additionalProperties"] is False
    assert set(info.args_schema["required"]) == {"image_path"}
    assert list(artifact_fields(EchoArgs)) == ["image_path"]


def test_settings_mappings_parse_from_env_strings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IGPT_DEVICES", "sam=cuda:0,inpaint=cuda:1")
    monkeypatch.setenv("IGPT_LLM__PROVIDER", "openai")
    s = Settings(data_dir=tmp_path)
    assert s.devices == {"sam": "cuda:0", "inpaint": "cuda:1"}
    assert s.device_for("sam") == "cuda:0" and s.device_for("vqa") == "auto"
    assert s.llm.provider == "openai"


def test_settings_from_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "igpt.toml"
    config.write_text('max_upload_bytes = 1234\n[llm]\nprovider = "none"\n')
    s = Settings(config_file=config)
    assert s.max_upload_bytes == 1234 and s.llm.provider == "none"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Settings(config_file=tmp_path / "missing.toml")
