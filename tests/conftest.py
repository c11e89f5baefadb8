"""Shared fixtures: an app on a temporary data directory, the test photos, caches under tmp."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

# the shared store's engines (PostgreSQL, S3), one each per test session
from tests.shared_store import postgres_server, s3_server, shared_store_env  # noqa: F401

DATA = Path(__file__).parent / "data"

# Keep libraries that write under ~ (matplotlib, llm, pip, easyocr...) inside a temp folder.
_cache_root = Path(tempfile.mkdtemp(prefix="igpt-test-cache-"))
for var in ("XDG_CACHE_HOME", "MPLCONFIGDIR", "LLM_USER_PATH"):
    os.environ.setdefault(var, str(_cache_root / var.lower()))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The api tests build many apps: no start-up warm-up (models load on first use) unless a test
# asks for it with Settings(warm_up=True).
os.environ.setdefault("IGPT_WARM_UP", "false")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real test photos and clips (origins in tests/data/README.md)."""
    return DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests run only where CUDA is visible."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """A TestClient of a fresh app whose data directory is under ``tmp_path``."""
    from tests.helpers import make_client

    with make_client(tmp_path / "data") as c:
        yield c
