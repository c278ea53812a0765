"""A checkpoint scored like a bundle: exported once (int8) into the runtime's bundle cache, keyed by the
checkpoint's file hashes, then opened by the torch-free runtime. This is `gptquant.load_model`; it sits in
lm, above the runtime, because exporting needs torch, while the runtime only opens what was exported."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from .. import bundle as B
from ..errors import MissingExtra
from ..runtime import scorer as R


def exported(path) -> Path:
    """The bundle to score `path` with: a bundle directory itself; for a Hugging Face GPT-2 checkpoint
    directory, its int8 bundle in the cache, exported first when missing or damaged."""
    path = Path(path)
    if (path / B.MANIFEST).is_file():
        return path
    target = R.cached_bundle(path)
    if target.is_dir():
        try:
            B.verify_bundle(target)
            return target
        except B.BundleError:
            shutil.rmtree(target)  # a damaged cache entry: rebuild it
    if importlib.util.find_spec("torch") is None:
        raise MissingExtra("torch", "train", "exporting a checkpoint")
    try:
        from .export import export_bundle
    except ImportError as exc:
        if exc.name in ("torch", "transformers"):
            raise MissingExtra(exc.name, "train", "exporting a checkpoint") from None
        raise
    target.parent.mkdir(parents=True, exist_ok=True)
    export_bundle(path, target, int8=True, name=path.resolve().name)  # atomic: never a half-written entry
    return target


def load_model(path, **kw):
    """A bundle directory -> Scorer; a Hugging Face GPT-2 checkpoint directory -> exported (int8) into a
    cache keyed by the checkpoint's file hashes, then a Scorer. Keyword arguments go to Scorer."""
    bundle = exported(path)
    if bundle != Path(path):
        kw.setdefault("verify", False)  # exported() has just verified the cache entry
    return R.Scorer(bundle, **kw)
