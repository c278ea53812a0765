"""Prebuild the test bundles for the torch-free run: `python tests/build_runtime_fixtures.py DIR`.

Run with the full install (torch, onnx); the runtime-only environment then finds the toy graphs and the tiny
GPT-2 bundle under $GPTQUANT_TEST_FIXTURES=DIR, so its runtime, panel and analysis tests run without skipping.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import SPECIALS, WORDS, _build_graph, build_tiny_bundle, build_tiny_checkpoint  # noqa: E402

# every (labels, seed) the tests ask make_bundle for
GRAPHS = [(n_labels, seed) for n_labels in (0, 2, 3) for seed in (0, 3, 7)]


def main(out: str) -> None:
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    vocab, hidden = len(SPECIALS) + len(WORDS), 8
    for n_labels, seed in GRAPHS:
        folder = root / f"graph-v{vocab}-h{hidden}-l{n_labels}-s{seed}"
        folder.mkdir(exist_ok=True)
        outputs = _build_graph(folder / "model.onnx", vocab, hidden, n_labels, seed)
        (folder / "outputs.json").write_text(json.dumps(outputs))
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_bundle(build_tiny_checkpoint(Path(tmp)), root / "tiny-fp32")
    print(f"test fixtures in {root}")


if __name__ == "__main__":
    main(sys.argv[1])
