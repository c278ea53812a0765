"""The model-bundle format shared by the exporter (gptquant.lm) and the runtime: a directory with
model.onnx, tokenizer.json and manifest.json, where the manifest lists the sha256 of every file.

Stdlib only, so both the torch side and the torch-free side can use it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .atomic import atomic_write_text  # noqa: F401  (re-exported)
from .codehash import sha256_file  # noqa: F401  (re-exported)
from .errors import GptquantError

FORMAT = "gptquant-bundle"
FORMAT_VERSION = 2  # 2: the manifest is sealed (SEAL) and dotfiles are listed like any file
SEAL = "manifest_sha256"
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"

INPUTS = ("input_ids", "attention_mask")  # int64 [batch, seq], dynamic axes
# Graph outputs. Per-token outputs are [batch, seq-1], aligned to the predicted token: column t scores
# input_ids[:, t+1] given input_ids[:, :t+1]; valid where attention_mask[:, 1:] == 1.
TOKEN_OUTPUTS = ("token_logprob", "token_entropy", "token_logprob_var", "token_rank")
POOLED_OUTPUTS = ("pooled", "last_hidden")  # [batch, hidden]: masked mean / last real position
SENTIMENT_OUTPUT = "sent_logprob"  # [batch, n_labels], only when a sentiment head was baked in
# The article-feature columns made from these outputs: gptquant.runtime.columns


class BundleError(GptquantError):
    """A bundle is missing, malformed, tampered with or unsafe."""


def _leftover(name: str) -> bool:
    """A temp file of an interrupted atomic write (gptquant.atomic: '.<name>.<random>.tmp'), never content."""
    return name.startswith(".") and name.endswith(".tmp")


def write_manifest(bundle_dir, manifest: dict) -> dict:
    """Hash every regular file in the bundle, dotfiles included, and write the sealed manifest.json
    atomically. Leftover temp files of interrupted writes are removed first. Returns the manifest."""
    bundle_dir = Path(bundle_dir)
    files = {}
    for p in sorted(bundle_dir.iterdir()):
        if p.name == MANIFEST:
            continue
        if _leftover(p.name) and p.is_file() and not p.is_symlink():
            p.unlink()
            continue
        if p.is_symlink() or not p.is_file():
            raise BundleError(f"{p}: bundles hold regular files only (no links or folders)")
        files[p.name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    body = {k: v for k, v in manifest.items() if k not in ("format", "format_version", "files", SEAL)}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **body, "files": files}
    manifest[SEAL] = manifest_digest(manifest)
    atomic_write_text(bundle_dir / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2))
    return manifest


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without its seal: it covers every field and, through the
    listed sha256s, every file."""
    body = {k: v for k, v in manifest.items() if k != SEAL}
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def read_manifest(bundle_dir) -> dict:
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle_dir}: not a gptquant bundle (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise BundleError(f"{path}: format_version {manifest.get('format_version')} is newer than this gptquant supports ({FORMAT_VERSION})")
    return manifest


def safe_member(bundle_dir, name: str) -> Path:
    """Resolve a file named in a manifest, refusing names that leave the bundle or are links."""
    root = Path(bundle_dir).resolve()
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", "..") or os.path.isabs(name):
        raise BundleError(f"{bundle_dir}: unsafe file name in manifest: {name!r}")
    path = Path(bundle_dir) / name
    if path.is_symlink():
        raise BundleError(f"{path}: is a symlink; bundles must hold regular files")
    if path.resolve().parent != root:
        raise BundleError(f"{path}: leaves the bundle directory")
    return path


def verify_bundle(bundle_dir) -> dict:
    """Check every listed file exists, is a regular file and matches its sha256; refuse unlisted files."""
    bundle_dir = Path(bundle_dir)
    if bundle_dir.is_symlink():
        raise BundleError(f"{bundle_dir}: is a symlink; refusing")
    manifest = read_manifest(bundle_dir)
    seal = manifest.get(SEAL)
    if seal is None:
        raise BundleError(f"{bundle_dir}: {MANIFEST} is not sealed (format_version {manifest.get('format_version')}, "
                          f"written before gptquant sealed manifests); re-export the bundle")
    if seal != manifest_digest(manifest):
        raise BundleError(f"{bundle_dir / MANIFEST}: edited after export (its content no longer matches its "
                          f"{SEAL}); re-export the bundle")
    files = manifest.get("files") or {}
    for required in (MODEL_FILE, TOKENIZER_FILE):
        if required not in files:
            raise BundleError(f"{bundle_dir}: manifest lists no {required}")
    for name, meta in files.items():
        path = safe_member(bundle_dir, name)
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing")
        digest = sha256_file(path)
        if digest != meta.get("sha256"):
            raise BundleError(f"{path}: sha256 mismatch (manifest {str(meta.get('sha256'))[:12]}…, file {digest[:12]}…): the bundle was modified or corrupted")
    for p in bundle_dir.iterdir():
        if p.name != MANIFEST and p.name not in files:
            raise BundleError(f"{p}: file not listed in the manifest (hidden files too: everything in a bundle is hashed)")
    return manifest


def bundle_hash(manifest: dict) -> str:
    """The bundle id: the hash of the whole manifest (every option, e.g. max_length, and every file's
    sha256), so two bundles that can score differently never share an id or a score-cache entry."""
    return manifest_digest(manifest)[:16]
