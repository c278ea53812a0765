"""Shared fixtures: where ../shared lives, and skips with a reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPTQUANT_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
FIXTURE_MODEL = SHARED / "models" / "gpt2-zh-fin-mini"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data/models folder beside the repo; set GPTQUANT_SHARED)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return need(DATA)


@pytest.fixture(scope="session")
def fixture_model() -> Path:
    return need(FIXTURE_MODEL)
