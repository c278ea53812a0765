"""The arithmetic behind benchmarks/compare_peers.py's table (FLOPs per pass, share of the int8 ceiling,
log-prob agreement): a wrong formula would misreport every row, so it is checked by hand, not by timing."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location("compare_peers", Path(__file__).parents[1] / "benchmarks" / "compare_peers.py")
cp = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cp)


def test_forward_flops_counts_linear_attention_and_head_by_hand():
    cfg = {"n_embd": 4, "n_layer": 2, "vocab_size": 10, "n_inner": None}
    # per token per layer: qkv 4x12 + proj 4x4 + mlp 4x16 + 16x4 = 192 weights, 2 FLOPs each, 3 tokens, 2 layers
    linear = 2 * 192 * 3 * 2
    # causal attention: QK^T and AV, token i sees i+1 positions (1 + 2 + 3 = 6 pairs), 4-wide, 2 FLOPs, 2 layers
    attention = 2 * 2 * 4 * 6 * 2
    head = 2 * 4 * 10 * 2  # the LM head on the 2 predicted positions
    assert cp.forward_flops(cfg, 3) == linear + attention + head == 2656
    assert cp.forward_flops(cfg, 3, lm_head=False) == linear + attention
    assert cp.forward_flops({**cfg, "n_inner": 8}, 3) == 2 * (48 + 16 + 64) * 3 * 2 + attention + head


def test_uer_shape_costs_about_204_mflop_per_token():
    """12 x 768: 85 M weights in the blocks (2 FLOPs each), 16.2 M in the LM head, ~2.4 M for attention at 128."""
    cfg = {"n_embd": 768, "n_layer": 12, "vocab_size": 21128}
    assert cp.forward_flops(cfg, 128) / 128 == pytest.approx(2 * 84.93e6 + 2 * 16.23e6 * 127 / 128 + 2.38e6, rel=1e-3)


def test_ceiling_share_and_gemm_rate():
    assert cp.gemm_rate(128, 768, 3072, 0.5) == 2 * 128 * 768 * 3072 * 2
    assert cp.share_of_ceiling(1000, 2e8, 4e11) == pytest.approx(0.5)


def test_logprob_agreement_mean_and_max_over_all_tokens():
    got = cp.logprob_agreement([np.array([-1.0, -2.0]), np.array([-3.0])], [[-1.5, -2.0], [-2.0]])
    assert got == {"mean_abs": pytest.approx(0.5), "max_abs": 1.0, "tokens": 3}
    with pytest.raises(ValueError, match="differ"):
        cp.logprob_agreement([np.array([-1.0, -2.0])], [[-1.0]])
