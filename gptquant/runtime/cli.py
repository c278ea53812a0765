"""`gptquant model pack|verify|info|upload` (`gptquant score` is gptquant.features.score_cli)."""
from __future__ import annotations


def configure(verb: str, parser) -> None:
    if verb == "model":
        sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        p = sub.add_parser("verify", help="check a bundle's file hashes and manifest")
        p.add_argument("bundle")
        p.set_defaults(func=run_verify)
        p = sub.add_parser("info", help="summarise a bundle's manifest")
        p.add_argument("bundle")
        p.set_defaults(func=run_info)
        p = sub.add_parser("pack", help="verify a bundle and write it as one .tar.gz")
        p.add_argument("bundle")
        p.add_argument("--out", required=True, help="archive path, e.g. model.tar.gz")
        p.set_defaults(func=run_pack)
        p = sub.add_parser("upload", help="install a bundle (folder or .tar.gz) as PROJECT/model, atomically")
        p.add_argument("src")
        p.add_argument("--project", required=True, help="project directory that receives model/")
        p.set_defaults(func=run_upload)
    else:
        raise ValueError(f"gptquant.runtime.cli has no verb {verb!r}")


# ---- model ---------------------------------------------------------------------------------------

def run_verify(args) -> int:
    from .. import bundle as B
    from .tools import verify

    m = verify(args.bundle)
    print(f"ok: {args.bundle} ({m.get('name', '?')}, {m.get('precision', '?')}, {len(m['files'])} files, id {B.bundle_hash(m)})")
    return 0


def run_info(args) -> int:
    from .tools import info

    print(info(args.bundle))
    return 0


def run_pack(args) -> int:
    from .tools import pack

    out = pack(args.bundle, args.out)
    print(f"packed {args.bundle} -> {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


def run_upload(args) -> int:
    from .. import bundle as B
    from .tools import upload

    target, m, kept = upload(args.src, args.project)
    note = f"; the previous model (not a bundle) was kept at {kept}" if kept else ""
    print(f"installed {m.get('name', '?')} (id {B.bundle_hash(m)}) at {target}{note}")
    return 0
