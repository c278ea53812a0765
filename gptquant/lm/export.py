"""Export a GPT-2 checkpoint to a bundle: an ONNX graph that computes per-token features inside the
graph (never the [batch, seq, vocab] logits), optional int8 dynamic quantisation gated by a parity
check against torch fp32 (parity.py), the tokenizer, and a manifest of hashes.
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
import warnings
from pathlib import Path

from .. import bundle as B
from ..atomic import fsync_dir, make_temp_dir
from ..errors import GptquantError, require
from ..runtime.columns import BASE_FEATURES
from ..tokenize import encode
from .checkpoint import Checkpoint, load_checkpoint
from .parity import PARITY_LIMITS, PARITY_TEXTS, check_parity, onnx_features, parity, torch_features

OPSET = 18
DEFAULT_MAX_LENGTH = 256


def _torch():
    return require("torch", "train", "exporting a model")


def feature_graph(model, head=None, sentiment_only: bool = False):
    """An nn.Module: (input_ids, attention_mask) -> the bundle's outputs (its `output_names`), all
    computed in-graph. sentiment_only: just the head's class log-probs, no per-token LM head: a P-tuned or
    fine-tuned head reads its own pass's last position; a linear probe the masked mean (pooled and
    last_hidden come free then)."""
    torch = _torch()
    if sentiment_only and head is None:
        raise GptquantError("a sentiment-only graph needs a sentiment head (train one with `gptquant train sentiment`)")
    takes_hidden = getattr(head, "takes_hidden", False)

    class FeatureGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = model.transformer
            if not sentiment_only:
                # explicit [hidden, vocab] weight so the LM head is a MatMul on an initializer, which the
                # int8 quantiser can quantise (a tied, transposed embedding can stay fp32 on some paths)
                w = model.lm_head.weight.detach().t().contiguous().clone()
                self.register_buffer("lm_weight", w)
            self.head = head
            self.output_names = output_names(head is not None, sentiment_only, takes_hidden)

        def hidden(self, input_ids, attention_mask):
            pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            h = self.transformer(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos,
                                 use_cache=False).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            last = (attention_mask.sum(-1) - 1).clamp(min=0)
            return h, pooled, h[torch.arange(h.shape[0]), last]

        def forward(self, input_ids, attention_mask):
            if sentiment_only and not takes_hidden:
                return (self.head(input_ids, attention_mask),)
            h, pooled, last_hidden = self.hidden(input_ids, attention_mask)
            if sentiment_only:
                return pooled, last_hidden, self.head(input_ids, attention_mask, h)
            logp = torch.log_softmax(torch.matmul(h[:, :-1], self.lm_weight), dim=-1)
            tok = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            p = logp.exp()
            plogp = p * logp
            entropy = -plogp.sum(-1)
            var = (plogp * logp).sum(-1) - entropy * entropy
            # counted in float (exact below 2**24 > any vocabulary): summing the bool mask as int64 took 14 % of
            # an int8 12x768 pass (an 8-byte cast and an integer ReduceSum over [seq, vocab])
            rank = (logp > tok.unsqueeze(-1)).to(logp.dtype).sum(-1).to(torch.long) + 1
            outs = (tok, entropy, var, rank, pooled, last_hidden)
            if self.head is not None:
                if takes_hidden:  # e.g. a linear probe: reuse this pass's states
                    outs = outs + (self.head(input_ids, attention_mask, h),)
                else:
                    outs = outs + (self.head(input_ids, attention_mask),)
            return outs

    return FeatureGraph().eval()


def output_names(with_head: bool, sentiment_only: bool = False, takes_hidden: bool = False) -> list[str]:
    if sentiment_only:
        return (list(B.POOLED_OUTPUTS) if takes_hidden else []) + [B.SENTIMENT_OUTPUT]
    return list(B.TOKEN_OUTPUTS + B.POOLED_OUTPUTS) + ([B.SENTIMENT_OUTPUT] if with_head else [])


def _export_onnx(graph, path: Path, exporter: str) -> None:
    torch = _torch()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [1, 2, 3, 0, 0, 0]], dtype=torch.long) + 100
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]], dtype=torch.long)
    names = graph.output_names
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq", min=2)}
            torch.onnx.export(graph, (ids, mask), str(path), input_names=list(B.INPUTS), output_names=names,
                              dynamic_shapes=(dims, dims), dynamo=True, opset_version=OPSET, external_data=False,
                              verbose=False)
        elif exporter == "torchscript":
            axes = {n: {0: "batch", 1: "seq"} for n in B.INPUTS}
            torch.onnx.export(graph, (ids, mask), str(path), input_names=list(B.INPUTS), output_names=names,
                              dynamic_axes=axes, dynamo=False, opset_version=OPSET)
        else:
            raise GptquantError(f"unknown exporter {exporter!r} (dynamo or torchscript)")


def quantize_int8(src: Path, dst: Path, vocab_size: int) -> None:
    """Dynamic int8 quantisation of every MatMul/Gemm weight, one scale per output column (per channel),
    checking the LM head got quantised too."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # per_channel: on gpt2-zh-fin-mini (64 texts) |dnll| mean 0.0202 -> 0.0162, entropy 0.0193 -> 0.0162, pooled max
    # 0.047 -> 0.043 against torch fp32, rank buckets equal, speed within 1 %.
    # DefaultTensorType: shape inference cannot type the outputs of onnxruntime's fused ops (an optimized graph)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                     per_channel=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    model = onnx.load(str(dst), load_external_data=False)
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm") and any(vocab_size in inits.get(i, ()) for i in node.input):
            raise GptquantError("int8 export left the LM head in fp32 (it would be ~10% slower); refusing")


OPTIMIZER_MIN_SPEEDUP = 1.05


def _best_seconds(path: Path, feed: dict, repeats: int = 3) -> float:
    import time

    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    sess.run(None, feed)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feed)
        best = min(best, time.perf_counter() - t)
    return best


def optimize_graph(path: Path, ckpt: Checkpoint, texts, max_length: int, ref: dict, force: bool = False) -> dict:
    """Run onnxruntime's GPT-2 transformer optimizer on an fp32 graph and keep the result in place only
    if it matches torch (|dnll| < 1e-3) and, unless forced, is >= 5 % faster on a fixed batch.

    On transformers-5 graphs it fuses LayerNorm/GELU but no attention, and it has crashed on some
    dynamo exports, so it is measured, never assumed.
    """
    from collections import Counter

    import onnx

    cfg = ckpt.config
    candidate = path.with_name(".optimized.onnx")
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimize_model(str(path), model_type="gpt2", num_heads=int(cfg["n_head"]), hidden_size=int(cfg["n_embd"]),
                           opt_level=0).save_model_to_file(str(candidate))
    except Exception as exc:  # the optimizer's own failures are a reason not to use it
        candidate.unlink(missing_ok=True)
        return {"used": False, "reason": f"optimizer failed: {type(exc).__name__}: {str(exc)[:160]}"}
    fused = Counter(n.op_type for n in onnx.load(str(candidate), load_external_data=False).graph.node
                    if n.domain == "com.microsoft")
    fig = parity(ref, onnx_features(candidate, ckpt, texts, max_length))
    ids, mask, _ = encode(ckpt.tokenizer, (list(texts) * 4)[:16], ckpt.policy, min(max_length, 64))
    feed = {"input_ids": ids, "attention_mask": mask}
    speedup = _best_seconds(path, feed) / _best_seconds(candidate, feed)
    out = {"fused": dict(fused), "speedup": round(speedup, 3), "nll_max_abs": fig["nll_max_abs"]}
    if fig["nll_max_abs"] > 1e-3:
        out.update(used=False, reason="optimized graph does not match torch")
    elif not force and speedup < OPTIMIZER_MIN_SPEEDUP:
        out.update(used=False, reason=f"speedup {speedup:.2f}x below {OPTIMIZER_MIN_SPEEDUP}x")
    else:
        os.replace(candidate, path)
        return {**out, "used": True}
    candidate.unlink(missing_ok=True)
    return out


def export_bundle(model_dir, out_dir, int8: bool = False, max_length: int = DEFAULT_MAX_LENGTH, name: str | None = None,
                  exporter: str = "dynamo", head=None, labels=None, heads: dict | None = None,
                  parity_limits: dict | None = None, parity_texts=None, ckpt: Checkpoint | None = None,
                  optimize: str = "off", sentiment_only: bool = False) -> dict:
    """Write a bundle directory atomically; returns its manifest.

    `head` is an optional nn.Module (input_ids, attention_mask) -> class log-probs [batch, len(labels)],
    baked into the graph as `sent_logprob`. int8 bundles that break `parity_limits` are refused.
    `optimize`: onnxruntime's transformer optimizer never ("off", the default: on gpt2-zh-fin-mini it
    measured 0.91-1.00x, and a timing-based choice would make exports differ run to run), kept when it is
    exact and measurably faster ("auto"), or always ("on"); recorded in manifest["parity"]["optimizer"].
    `sentiment_only`: a graph with the sentiment head's outputs only (no per-token LM statistics, no
    [batch, seq, vocab] work); manifest["graph"] says "sentiment-only" (else "full"). A detector in
    `heads` adds ai_score agreement to the int8 parity figures (and limits).
    """
    if optimize not in ("auto", "on", "off"):
        raise GptquantError(f"optimize must be auto, on or off, got {optimize!r}")
    _torch()  # the extra is needed: fail early with its one-line message
    ckpt = ckpt or load_checkpoint(model_dir)
    out_dir = Path(out_dir)
    max_length = int(min(max_length, ckpt.config.get("n_positions", max_length)))
    if head is None and labels is None and heads is None:
        from .headfile import bundle_head  # a checkpoint trained by `gptquant train sentiment|detector`

        head, labels, heads = bundle_head(model_dir, ckpt)
    hybrid = None
    if (heads or {}).get("sentiment", {}).get("method") == "hybrid":
        from ..runtime.hybrid import HybridHead

        if sentiment_only:
            raise GptquantError("a hybrid sentiment head reads the LM statistics: export a full graph, not sentiment-only")
        hybrid = HybridHead.load(model_dir)
    if (head is None) != (labels is None):
        raise GptquantError("a sentiment head needs its label names, and labels need a head")
    if sentiment_only and optimize != "off":
        raise GptquantError("the transformer optimizer is for full graphs; use optimize='off' with sentiment_only")
    graph = feature_graph(ckpt.model, head, sentiment_only)
    detector = (heads or {}).get("detector") if not sentiment_only else None
    if detector:
        from ..runtime.heads import check_detector

        check_detector(detector, "heads.detector", hidden_size=int(ckpt.config["n_embd"]))
    if parity_texts is None and model_dir is not None:  # fixed texts + the head's own validation sample
        from .headfile import read_head_meta

        parity_texts = PARITY_TEXTS + list((read_head_meta(model_dir) or {}).get("parity_texts") or [])
    texts = list(parity_texts or PARITY_TEXTS)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{out_dir.name}.", out_dir.parent)  # the umask's mode, not mkdtemp's 0700
    try:
        fp32 = tmp / (".fp32.onnx" if int8 else B.MODEL_FILE)
        try:
            _export_onnx(graph, fp32, exporter)
        except GptquantError:
            raise
        except Exception as exc:
            if exporter != "dynamo":
                raise
            warnings.warn(f"dynamo export failed ({type(exc).__name__}: {exc}); falling back to torchscript")
            exporter = "torchscript"
            _export_onnx(graph, fp32, exporter)
        ref = torch_features(graph, ckpt, texts, max_length)
        fig = {"fp32": parity(ref, onnx_features(fp32, ckpt, texts, max_length), detector, hybrid)}
        fig["optimizer"] = (optimize_graph(fp32, ckpt, texts, max_length, ref, force=optimize == "on")
                            if optimize != "off" else {"used": False, "reason": "off"})
        if int8:
            quantize_int8(fp32, tmp / B.MODEL_FILE, ckpt.vocab_size)
            fp32.unlink()
            fig["int8"] = parity(ref, onnx_features(tmp / B.MODEL_FILE, ckpt, texts, max_length), detector, hybrid)
            limits = {**PARITY_LIMITS, **(parity_limits or {})}
            bad = check_parity(fig["int8"], limits)
            if bad:
                raise GptquantError("int8 bundle refused: parity against torch fp32 too poor: " + "; ".join(bad))
        fig["limits"] = {**PARITY_LIMITS, **(parity_limits or {})}
        fig["texts"] = len(texts)
        ckpt.tokenizer.save(str(tmp / B.TOKENIZER_FILE))
        cfg = ckpt.config
        manifest = {
            "name": name or out_dir.name,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source": {"path": str(ckpt.path), "weights": ckpt.weights_file.name if ckpt.weights_file else None,
                       "sha256": ckpt.source_sha256(),
                       "architecture": {k: cfg.get(k) for k in ("n_layer", "n_embd", "n_head", "n_positions", "vocab_size")}},
            "exporter": exporter,
            "opset": OPSET,
            "precision": "int8" if int8 else "fp32",
            "max_length": max_length,
            "hidden_size": int(cfg["n_embd"]),
            "tokenizer": {"kind": ckpt.tokenizer_kind, "vocab_size": ckpt.tokenizer.get_vocab_size(), **ckpt.policy.to_dict()},
            "inputs": list(B.INPUTS),
            "graph": "sentiment-only" if sentiment_only else "full",
            "outputs": list(graph.output_names),
            "feature_names": list(BASE_FEATURES),
            "parity": fig,
        }
        if labels is not None:
            manifest["labels"] = list(labels)
        if hybrid is not None:
            from .hybrid_bundle import bundle_files

            manifest["labels"] = list(hybrid.labels)
            heads["sentiment"]["files"] = bundle_files(model_dir, tmp)
            if hybrid.aspect:  # trained on aspect rows: its features expect what they were fitted on
                heads["sentiment"]["input"] = "term：text"
        if heads:
            manifest["heads"] = heads
        manifest = B.write_manifest(tmp, manifest)
        _replace_dir(tmp, out_dir)
        return manifest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(new: Path, dst: Path) -> None:
    """Put `new` at `dst` with renames; an existing `dst` is removed only after the swap."""
    old = None
    if dst.is_symlink():
        raise GptquantError(f"{dst}: is a symlink; refusing to replace it")
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
    os.replace(new, dst)
    fsync_dir(dst.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
