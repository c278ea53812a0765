"""The trained-checkpoint format: a copy of the base model's files plus the sentiment head
(gptquant_sentiment.json + .safetensors), the TF-IDF baseline and the detector, as JSON or safetensors
(never pickle). `gptquant export` reads it through bundle_head."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..atomic import atomic_write, atomic_write_text
from ..errors import GptquantError
from ..runtime.heads import check_detector

HEAD_JSON = "gptquant_sentiment.json"
HEAD_WEIGHTS = "gptquant_sentiment.safetensors"
BASELINE_JSON = "gptquant_baseline.json"
DETECTOR_JSON = "gptquant_detector.json"
BASE_FILES = ("config.json", "generation_config.json", "model.safetensors", "pytorch_model.bin", "vocab.txt",
              "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              DETECTOR_JSON)


def read_head_meta(model_dir) -> dict | None:
    """gptquant_sentiment.json of a checkpoint directory, or None when it holds no sentiment head."""
    path = Path(model_dir) / HEAD_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GptquantError(f"{path}: unreadable ({exc})") from None


def load_detector(path) -> dict:
    try:
        det = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GptquantError(f"{path}: unreadable detector ({exc})") from None
    return check_detector(det, str(path))


def load_head(model_dir, ckpt=None):
    """(head module in eval mode with the fitted temperature, meta) from a trained checkpoint directory,
    or None when the directory holds no sentiment head."""
    model_dir = Path(model_dir)
    meta = read_head_meta(model_dir)
    if meta is None:
        return None
    from safetensors.torch import load_file

    from .checkpoint import load_checkpoint
    from .heads import build_head

    if meta.get("method") == "hybrid":
        raise GptquantError(f"{model_dir}: holds a hybrid head (numpy, gptquant.runtime.hybrid), not a torch module")
    if not (model_dir / HEAD_WEIGHTS).is_file():
        raise GptquantError(f"{model_dir}: {HEAD_JSON} present but {HEAD_WEIGHTS} missing")
    ckpt = ckpt or load_checkpoint(model_dir)
    head = build_head(meta, ckpt.model)
    state = load_file(str(model_dir / HEAD_WEIGHTS))
    missing, unexpected = head.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("lm.")]
    if missing or unexpected:
        raise GptquantError(f"{model_dir / HEAD_WEIGHTS}: does not fit a {meta['method']} head "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return head.eval(), meta


def save_head(src, out_dir: Path, head, meta: dict) -> None:
    """Write a complete checkpoint: the base model's files (from `src`), the head's weights, then its
    JSON last (its presence marks a finished head)."""
    from safetensors.torch import save_file

    from .heads import own_state

    _copy_base(Path(src), out_dir)
    atomic_write(out_dir / HEAD_WEIGHTS, lambda tmp: save_file(own_state(head), tmp))
    atomic_write_text(out_dir / HEAD_JSON, json.dumps(meta, ensure_ascii=False, indent=2))


def save_meta(src, out_dir: Path, meta: dict) -> None:
    """A complete checkpoint for a head whose own files are already in `out_dir` (the hybrid head):
    the base model's files, then the JSON last."""
    _copy_base(Path(src), out_dir)
    (out_dir / HEAD_WEIGHTS).unlink(missing_ok=True)  # a torch head trained here before is not this head
    atomic_write_text(out_dir / HEAD_JSON, json.dumps(meta, ensure_ascii=False, indent=2))


def _copy_base(src: Path, dst: Path) -> None:
    """The base checkpoint's files beside the head, so the output directory is a complete checkpoint."""
    if src.resolve() == dst.resolve():
        return
    for name in BASE_FILES:
        if (src / name).is_file():
            atomic_write(dst / name, lambda tmp: shutil.copyfile(src / name, tmp))


def bundle_head(model_dir, ckpt):
    """What export bakes from a trained checkpoint: (head, labels, heads-for-the-manifest). The P-tuned
    prompt is baked to constants; the detector (if trained) rides along in the manifest."""
    heads = {}
    if (Path(model_dir) / DETECTOR_JSON).is_file():
        heads["detector"] = load_detector(Path(model_dir) / DETECTOR_JSON)
    meta = read_head_meta(model_dir)
    if meta is not None and meta.get("method") == "hybrid":  # no graph head: export adds its files
        heads["sentiment"] = {k: meta[k] for k in ("method", "labels", "temperature", "validation", "auto") if k in meta}
        return None, None, heads
    found = load_head(model_dir, ckpt)
    if found is None:
        return None, None, heads or None
    head, meta = found
    if meta["method"] == "ptuning":
        head.bake()
    heads["sentiment"] = {k: meta[k] for k in ("method", "labels", "temperature", "verbalizers", "n_prefix",
                                                "n_suffix", "anchor", "validation") if k in meta}
    return head, list(meta["labels"]), heads
