"""Parity between torch fp32 and an exported graph: the feature dicts both produce on the same texts, the
agreement figures export records in the manifest, and the limits an int8 bundle must meet."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import bundle as B
from ..errors import require
from ..runtime.columns import RANK_BUCKETS, token_statistics
from ..tokenize import encode
from .checkpoint import Checkpoint

# int8 is refused when parity against torch fp32 is worse than this (measured ~0.02 mean here)
PARITY_LIMITS = {"nll_mean_abs": 0.05, "nll_max_abs": 1.5, "rank_bucket_agreement": 0.95, "sent_prob_max_abs": 0.05,
                 "sent_label_agreement": 0.97, "ai_prob_max_abs": 0.1, "ai_label_agreement": 0.9}

# Fixed texts for parity checks: written for this project (synthetic financial flashes, no data copied).
PARITY_TEXTS = [
    "公司公告，拟以自有资金回购股份，回购价格不超过每股二十元。",
    "受原材料价格上涨影响，公司第三季度净利润同比下降百分之十五。",
    "董事会审议通过了年度利润分配预案，每十股派发现金红利三元。",
    "该股今日早盘高开，午后震荡回落，全天成交额较前一交易日有所放大。",
    "公司与某大型汽车制造商签订了为期五年的电池供货框架协议。",
    "因涉嫌信息披露违规，公司收到证券监管部门的立案调查通知书。",
    "央行宣布下调存款准备金率零点五个百分点，释放长期资金约一万亿元。",
    "券商研报维持买入评级，预计明年营业收入增长百分之二十以上。",
    "公司控股股东计划在未来六个月内减持不超过百分之二的股份。",
    "新产品获得国家药品监督管理局批准上市，有望成为新的利润增长点。",
    "Q3营收12.5亿元，同比增长8.3%，毛利率提升1.2个百分点。",
    "市场情绪谨慎，北向资金净流出，沪深两市成交量萎缩。",
    "年报显示公司经营活动现金流量净额为负，应收账款大幅增加。",
    "公司中标某地智慧城市建设项目，中标金额约三点六亿元。",
    "短",
    "公司发布澄清公告，称近期媒体报道的重组传闻不属实，目前没有应披露而未披露的重大事项。" * 3,
]


def torch_features(graph, ckpt: Checkpoint, texts, max_length: int) -> dict:
    torch = require("torch", "train", "exporting a model")
    ids, mask, _ = encode(ckpt.tokenizer, texts, ckpt.policy, max_length)
    with torch.no_grad():
        outs = graph(torch.from_numpy(ids), torch.from_numpy(mask))
    return {"mask": mask, "ids": ids, **{n: o.numpy() for n, o in zip(graph.output_names, outs)}}


def onnx_features(path: Path, ckpt: Checkpoint, texts, max_length: int, threads: int | None = None) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ids, mask, _ = encode(ckpt.tokenizer, texts, ckpt.policy, max_length)
    outs = sess.run(None, {"input_ids": ids, "attention_mask": mask})
    return {"mask": mask, "ids": ids, **{o.name: v for o, v in zip(sess.get_outputs(), outs)}}


def _bucket(rank):
    return np.searchsorted(np.array(RANK_BUCKETS), rank, side="left")


def parity(ref: dict, got: dict, detector: dict | None = None, hybrid=None) -> dict:
    """Agreement figures between two feature dicts on the same texts (ref = torch fp32): per-token LM
    outputs, pooled states, sentiment probabilities and, given a detector, ai_score (texts whose
    statistics are undefined are left out)."""
    out = {"n_texts": int(ref["mask"].shape[0])}
    valid = ref["mask"][:, 1:].astype(bool)
    if "token_logprob" in ref:
        d = np.abs(ref["token_logprob"][valid] - got["token_logprob"][valid])
        out.update({
            "n_tokens": int(valid.sum()),
            "nll_mean_abs": float(d.mean()),
            "nll_max_abs": float(d.max()),
            "entropy_mean_abs": float(np.abs(ref["token_entropy"][valid] - got["token_entropy"][valid]).mean()),
            "rank_bucket_agreement": float((_bucket(ref["token_rank"][valid]) == _bucket(got["token_rank"][valid])).mean()),
        })
    if "pooled" in ref:
        out["pooled_max_abs"] = float(np.abs(ref["pooled"] - got["pooled"]).max())
    if B.SENTIMENT_OUTPUT in ref or hybrid is not None:
        if hybrid is not None:
            from .hybrid_bundle import feature_probs

            pr, pg = feature_probs(ref, hybrid), feature_probs(got, hybrid)
        else:
            pr, pg = np.exp(ref[B.SENTIMENT_OUTPUT]), np.exp(got[B.SENTIMENT_OUTPUT])
        out["sent_prob_max_abs"] = float(np.abs(pr - pg).max())
        out["sent_label_agreement"] = float((pr.argmax(1) == pg.argmax(1)).mean())
    if detector and "token_logprob" in ref and "pooled" in ref:
        ar, ag = _ai_score(ref, valid, detector), _ai_score(got, valid, detector)
        ok = np.isfinite(ar) & np.isfinite(ag)
        if ok.any():
            d = np.abs(ar[ok] - ag[ok])
            out.update(ai_prob_max_abs=float(d.max()), ai_prob_mean_abs=float(d.mean()),
                       ai_label_agreement=float(((ar[ok] >= 0.5) == (ag[ok] >= 0.5)).mean()))
    return out


def _ai_score(feats: dict, valid, detector: dict) -> np.ndarray:
    """The runtime's ai_score from one feature dict (the scorer's own reduction and detector)."""
    import pandas as pd

    from ..runtime.heads import detector_score

    df = pd.DataFrame(token_statistics(feats, valid))
    return detector_score(df, detector, feats["pooled"])


def check_parity(fig: dict, limits: dict = PARITY_LIMITS) -> list[str]:
    """Which limits a parity result breaks (empty when it passes)."""
    bad = []
    for key, lim in limits.items():
        if key not in fig:
            continue
        worse = fig[key] < lim if key.endswith("agreement") else fig[key] > lim
        if worse:
            bad.append(f"{key}={fig[key]:.4f} (limit {lim})")
    return bad
