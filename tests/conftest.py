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


# ---- tiny models built by the project's own code (no shared data needed) ------------------------

def demo_texts(n: int, seed: int = 0) -> list[str]:
    """Synthetic Chinese financial flashes from the demo-world generator."""
    import numpy as np

    from gptquant.demo_world import write_article

    rng = np.random.default_rng(seed)
    return [write_article(f"测试{'甲乙丙丁'[i % 4]}科技", int(rng.integers(3)), rng) for i in range(n)]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny GPT-2 (2 layers x 64) in the uer layout, pretrained a few steps by `pretrain`."""
    pytest.importorskip("torch")
    from gptquant.lm.pretrain import pretrain

    root = tmp_path_factory.mktemp("tiny")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(demo_texts(300)), encoding="utf-8")
    out = root / "model"
    pretrain(out, corpus, config="tiny", steps=8, block=32, batch=8, vocab_size=800, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint, tmp_path_factory) -> Path:
    """An fp32 bundle exported from tiny_checkpoint (max_length 48)."""
    from gptquant.lm.export import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny-fp32"
    export_bundle(tiny_checkpoint, out, int8=False, max_length=48, exporter="torchscript")
    return out


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray on 2 CPUs for one test module (Ray start-up is slow: once per module)."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'gptquant[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
