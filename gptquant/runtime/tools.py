"""Bundle tools behind `gptquant model verify | info | pack | upload`.

Upload is built so a failure at any step leaves the project's current model untouched: the new
bundle is staged in a temp folder inside the project, verified there, and only then swapped in by
renames on the same filesystem.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import time
from pathlib import Path, PurePosixPath

from .. import bundle as B
from ..atomic import atomic_write, fsync_dir, make_temp_dir
from .scorer import check_manifest


def verify(bundle_dir) -> dict:
    """Hashes, file list and the runtime's manifest keys; returns the manifest or raises BundleError."""
    manifest = B.verify_bundle(bundle_dir)
    check_manifest(manifest, bundle_dir)
    return manifest


def info(bundle_dir) -> str:
    """A human summary of a bundle's manifest (does not verify hashes)."""
    m = B.read_manifest(bundle_dir)
    tok = m.get("tokenizer") or {}
    special = ", ".join(f"{k}={tok[k]}" for k in ("bos_id", "eos_id", "pad_id") if k in tok)
    policy = f"add_bos={tok.get('add_bos')}, add_eos={tok.get('add_eos')}"
    lines = [
        f"bundle     {Path(bundle_dir)}",
        f"name       {m.get('name', '?')}",
        f"precision  {m.get('precision', '?')}",
        f"max length {m.get('max_length', '?')} tokens (incl. special tokens)",
        f"tokenizer  {tok.get('kind', '?')}, vocab {tok.get('vocab_size', '?')}; {special}; {policy}",
        f"labels     {', '.join(m['labels']) if m.get('labels') else '(no sentiment head)'}",
        f"graph      {m.get('graph', 'full')}"
        + (" (sentiment head only: no LM statistics, no per-token LM head)" if m.get("graph") == "sentiment-only" else ""),
        f"outputs    {', '.join(m.get('outputs') or []) or '?'}",
    ]
    if m.get("heads"):
        lines.append(f"heads      {', '.join(m['heads']) if isinstance(m['heads'], (list, dict)) else m['heads']}")
        sent = m["heads"].get("sentiment") if isinstance(m["heads"], dict) else None
        if isinstance(sent, dict):
            val = sent.get("validation") if isinstance(sent.get("validation"), dict) else {}
            f1 = f", validation macro-F1 {val['macro_f1']:.4f}" if isinstance(val.get("macro_f1"), (int, float)) else ""
            how = ("token n-grams + GPT features (numpy, files " + ", ".join(sent.get("files") or []) + ")"
                   if sent.get("method") == "hybrid" else "in the graph (sent_logprob)")
            lines.append(f"sentiment  {sent.get('method', '?')} head: {how}{f1}")
            if sent.get("input"):
                lines.append(f"input      {sent['input']} (an aspect head: score each text with the company it is about first)")
        det = m["heads"].get("detector") if isinstance(m["heads"], dict) else None
        if isinstance(det, dict):
            test = det.get("test") if isinstance(det.get("test"), dict) else {}
            auc = f", test AUROC {test['ai_score']:.4f}" if isinstance(test.get("ai_score"), (int, float)) else ""
            lines.append(f"detector   ai_score from {det.get('inputs', 'stats')}{auc}")
    parity = m.get("parity")
    if isinstance(parity, dict) and parity:
        flat = {k: v for k, v in parity.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in parity.items() if isinstance(v, dict)}
        if flat:
            lines.append("parity     " + _pairs(flat))
        for k, v in nested.items():
            lines.append(f"parity     {k}: {_pairs(v)}")
    elif parity is not None:
        lines.append(f"parity     {parity}")
    source = m.get("source")
    if isinstance(source, dict):
        arch = source.get("architecture")
        lines.append(f"source     {source.get('path', '?')} (sha256 {str(source.get('sha256', '?'))[:16]}…)")
        if isinstance(arch, dict):
            lines.append(f"arch       {_pairs(arch)}")
    for key in ("created", "exporter", "opset"):
        if key in m:
            lines.append(f"{key:<10} {m[key]}")
    lines.append(f"id         {B.bundle_hash(m)}")
    lines.append("files")
    for name, meta in sorted((m.get("files") or {}).items()):
        lines.append(f"  {name:<24} {_size(meta.get('bytes'))}  sha256 {str(meta.get('sha256'))[:16]}…")
    return "\n".join(lines)


def pack(bundle_dir, out) -> Path:
    """Verify, then write a flat .tar.gz of the manifest and every listed file (atomically)."""
    bundle_dir, out = Path(bundle_dir), Path(out)
    manifest = verify(bundle_dir)

    def write(tmp):
        with tarfile.open(tmp, "w:gz") as tar:
            for name in [B.MANIFEST, *sorted(manifest["files"])]:
                info_ = tar.gettarinfo(str(bundle_dir / name), arcname=name)
                info_.uid = info_.gid = 0
                info_.uname = info_.gname = ""
                info_.mode = 0o644
                with open(bundle_dir / name, "rb") as f:
                    tar.addfile(info_, f)

    atomic_write(out, write)
    return out


def upload(src, project_dir) -> tuple[Path, dict, Path | None]:
    """Install a bundle (directory or .tar.gz from `pack`) as PROJECT_DIR/model.

    Returns (model path, manifest, where a replaced non-bundle model was kept or None)."""
    src, project_dir = Path(src), Path(project_dir)
    if not project_dir.is_dir():
        raise B.BundleError(f"{project_dir}: project directory not found")
    if src.is_symlink():
        raise B.BundleError(f"{src}: is a symlink; refusing")
    target = project_dir / "model"
    stage = make_temp_dir(".model-upload-", project_dir)
    try:
        if src.is_dir():
            _copy_dir(src, stage)
        elif src.is_file():
            _extract_tar(src, stage)
        else:
            raise B.BundleError(f"{src}: no such bundle directory or archive")
        manifest = verify(stage)
        kept = _swap(stage, target)
        fsync_dir(project_dir)
        return target, manifest, kept
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _copy_dir(src: Path, stage: Path) -> None:
    manifest = verify(src)  # refuses links, unlisted files and hash mismatches in the source
    for name in [B.MANIFEST, *manifest["files"]]:
        path = B.safe_member(src, name)
        if not path.is_file():
            raise B.BundleError(f"{path}: not a regular file")
        shutil.copyfile(path, stage / name, follow_symlinks=False)


def _extract_tar(src: Path, stage: Path) -> None:
    """Extract only regular files named in the archive's manifest; refuse anything else, by name."""
    import json

    try:
        tar = tarfile.open(src, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise B.BundleError(f"{src}: not a readable tar archive ({exc})") from None
    with tar:
        members = tar.getmembers()
        prefix = _common_prefix(src, members)
        files = {}
        for m in members:
            name = _member_name(src, m, prefix)
            if name is None:
                continue  # the single top-level folder itself
            if m.issym() or m.islnk():
                raise B.BundleError(f"{src}: member {m.name!r} is a link; refusing")
            if not m.isfile():
                raise B.BundleError(f"{src}: member {m.name!r} is not a regular file (device, fifo or folder); refusing")
            if name in files:
                raise B.BundleError(f"{src}: member {name!r} appears twice; refusing")
            files[name] = m
        if B.MANIFEST not in files:
            raise B.BundleError(f"{src}: archive holds no {B.MANIFEST}")
        try:
            manifest = json.loads(tar.extractfile(files[B.MANIFEST]).read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise B.BundleError(f"{src}: unreadable {B.MANIFEST} ({exc})") from None
        listed = set((manifest.get("files") or {}) if isinstance(manifest, dict) else {})
        for name in files:
            if name != B.MANIFEST and name not in listed:
                raise B.BundleError(f"{src}: member {name!r} is not listed in the manifest; refusing")
        for name, m in files.items():
            B.safe_member(stage, name)
            meta = manifest["files"].get(name) if name != B.MANIFEST else None
            expected = meta.get("bytes") if isinstance(meta, dict) else None
            if isinstance(expected, int) and m.size != expected:
                raise B.BundleError(f"{src}: member {name!r} is {m.size} bytes, the manifest says {expected}; refusing")
            with tar.extractfile(m) as f_in, open(stage / name, "xb") as f_out:
                shutil.copyfileobj(f_in, f_out)


def _common_prefix(src: Path, members) -> str | None:
    """Accept a flat archive or one whose members all sit in one top-level folder."""
    tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    nested = any(len(PurePosixPath(m.name).parts) > 1 for m in members)
    if nested and len(tops) == 1:
        return tops.pop()
    return None


def _member_name(src: Path, m, prefix: str | None) -> str | None:
    raw = m.name
    if raw.startswith("/") or raw.startswith("\\") or (len(raw) > 1 and raw[1] == ":"):
        raise B.BundleError(f"{src}: member {raw!r} has an absolute path; refusing")
    parts = PurePosixPath(raw.replace("\\", "/")).parts
    if ".." in parts:
        raise B.BundleError(f"{src}: member {raw!r} leaves the archive ('..'); refusing")
    parts = tuple(p for p in parts if p != ".")
    if prefix is not None:
        if parts == (prefix,) and m.isdir():
            return None
        parts = parts[1:] if parts and parts[0] == prefix else parts
    if len(parts) != 1:
        raise B.BundleError(f"{src}: member {raw!r} is nested; bundles are flat")
    return parts[0]


def _swap(stage: Path, target: Path) -> Path | None:
    """Rename the verified stage over `target`. A previous bundle is removed once the new one is in
    place; anything else there (e.g. a training checkpoint) is kept beside it and its path returned."""
    if not target.exists() and not target.is_symlink():
        os.rename(stage, target)
        return None
    was_bundle = target.is_dir() and not target.is_symlink() and (target / B.MANIFEST).is_file()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    old = target.with_name(f".model-previous-{os.getpid()}-{stamp}" if was_bundle else f"model.previous-{stamp}")
    os.rename(target, old)
    try:
        os.rename(stage, target)
    except BaseException:
        os.rename(old, target)
        raise
    if not was_bundle:
        return old
    shutil.rmtree(old, ignore_errors=True)
    return None


def _pairs(d: dict) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in d.items())


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _size(n) -> str:
    if not isinstance(n, int):
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
