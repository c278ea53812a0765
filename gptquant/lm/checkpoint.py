"""Load a user's Hugging Face GPT-2 directory (./model/) safely, with the right tokenizer.

Tokenizers are read from the checkpoint, never assumed: BERT WordPiece (vocab.txt, uer-style Chinese
GPT-2), byte-level BPE (vocab.json + merges.txt, e.g. Wenzhong or English gpt2) or a tokenizer.json.
We build them with the `tokenizers` library directly (transformers 5's BertTokenizer(vocab_file=...)
silently builds a 5-token vocabulary) and check the size against the embedding rows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..bundle import sha256_file
from ..errors import GptquantError, require
from ..tokenize import SpecialTokens

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class Checkpoint:
    path: Path
    config: dict
    tokenizer: object  # tokenizers.Tokenizer without special-token post-processing
    tokenizer_kind: str  # wordpiece | bpe | tokenizers-json
    policy: SpecialTokens
    weights_file: Path | None
    model: object = field(default=None, repr=False)  # GPT2LMHeadModel, eval mode

    @property
    def vocab_size(self) -> int:
        return int(self.config["vocab_size"])

    def source_sha256(self) -> str:
        return sha256_file(self.weights_file) if self.weights_file else ""


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GptquantError(f"{path}: unreadable JSON ({exc})") from None


def detect_tokenizer(model_dir: Path, config: dict):
    """(tokenizers.Tokenizer, kind) from the files in a checkpoint directory."""
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer, ByteLevelBPETokenizer

    tok_cfg = _read_json(model_dir / "tokenizer_config.json") if (model_dir / "tokenizer_config.json").is_file() else {}
    tok_class = str(tok_cfg.get("tokenizer_class") or config.get("tokenizer_class") or "")
    if (model_dir / "tokenizer.json").is_file():
        tok, kind = Tokenizer.from_file(str(model_dir / "tokenizer.json")), "tokenizers-json"
    elif (model_dir / "vocab.txt").is_file():
        lower = bool(tok_cfg.get("do_lower_case", True))  # HF BertTokenizer's default is True
        tok = BertWordPieceTokenizer(
            str(model_dir / "vocab.txt"),
            lowercase=lower,
            strip_accents=tok_cfg.get("strip_accents"),
            handle_chinese_chars=bool(tok_cfg.get("tokenize_chinese_chars", True)),
            clean_text=True,
        )._tokenizer
        kind = "wordpiece"
    elif (model_dir / "vocab.json").is_file() and (model_dir / "merges.txt").is_file():
        tok = ByteLevelBPETokenizer(
            str(model_dir / "vocab.json"), str(model_dir / "merges.txt"),
            add_prefix_space=bool(tok_cfg.get("add_prefix_space", False)),
        )._tokenizer
        kind = "bpe"
    else:
        raise GptquantError(f"{model_dir}: no tokenizer found (need tokenizer.json, vocab.txt, or vocab.json + merges.txt)")
    if tok_class.startswith("Bert") and kind == "bpe":
        raise GptquantError(f"{model_dir}: config says {tok_class} but only BPE files were found")
    # special tokens are framed by our policy, not by the file's template
    tok.post_processor = None
    tok.no_truncation()
    tok.no_padding()
    return tok, kind


def special_token_policy(tok, kind: str, config: dict) -> SpecialTokens:
    """Decide once which BOS/EOS frame a text (stored in the bundle)."""
    def tid(token):
        return tok.token_to_id(token)

    if tid("[CLS]") is not None:  # uer-style: [CLS] text [SEP]
        bos, eos = tid("[CLS]"), tid("[SEP]")
        pad = tid("[PAD]") if tid("[PAD]") is not None else 0
    else:  # GPT-2 BPE: <|endoftext|> separates documents; prepend it so the first token is scored
        bos = config.get("bos_token_id")
        eos = config.get("eos_token_id")
        for name in ("<|endoftext|>", "<s>", "</s>"):
            if bos is None and tid(name) is not None:
                bos = tid(name)
        eos = eos if eos is not None else bos
        pad = config.get("pad_token_id")
        pad = pad if pad is not None else (eos if eos is not None else 0)
    return SpecialTokens(bos_id=bos, eos_id=eos, pad_id=int(pad), add_bos=bos is not None, add_eos=False)


def load_checkpoint(path, with_model: bool = True) -> Checkpoint:
    """Read config, tokenizer and (optionally) weights of an HF GPT-2 directory, checking they fit."""
    model_dir = Path(path)
    if not model_dir.is_dir():
        raise GptquantError(f"{model_dir}: not a directory (expected a Hugging Face GPT-2 checkpoint)")
    if not (model_dir / "config.json").is_file():
        raise GptquantError(f"{model_dir}: no config.json (expected a Hugging Face GPT-2 checkpoint)")
    config = _read_json(model_dir / "config.json")
    if config.get("model_type", "gpt2") != "gpt2":
        raise GptquantError(f"{model_dir}/config.json: model_type {config.get('model_type')!r} is not gpt2")
    for key in ("vocab_size", "n_embd", "n_layer", "n_head"):
        if key not in config:
            raise GptquantError(f"{model_dir}/config.json: missing field {key!r}")
    weights = next((model_dir / w for w in WEIGHT_FILES if (model_dir / w).is_file()), None)
    check_sizes(model_dir, config, weights)
    tok, kind = detect_tokenizer(model_dir, config)
    n_tok = tok.get_vocab_size(with_added_tokens=True)
    if n_tok < 100:
        raise GptquantError(f"{model_dir}: tokenizer has only {n_tok} tokens; the vocabulary did not load")
    if n_tok != int(config["vocab_size"]):  # fewer: rows no text can reach still share the softmax (ppl, ranks)
        raise GptquantError(f"{model_dir}: tokenizer has {n_tok} tokens but the model has {config['vocab_size']} "
                            f"embedding rows; they must match (wrong vocab file for these weights?)")
    policy = special_token_policy(tok, kind, config)
    ckpt = Checkpoint(model_dir, config, tok, kind, policy, weights)
    if with_model:
        if weights is None:
            raise GptquantError(f"{model_dir}: no weights (need {' or '.join(WEIGHT_FILES)})")
        ckpt.model = load_weights(model_dir, weights, config)
    return ckpt


def fp32_bytes(config: dict) -> int:
    """Bytes of a GPT-2's parameters in fp32, from its config alone (embeddings, blocks, final norm)."""
    v, e, n = int(config["vocab_size"]), int(config["n_embd"]), int(config["n_layer"])
    p = int(config.get("n_positions") or config.get("n_ctx") or 1024)
    inner = int(config.get("n_inner") or 4 * e)
    block = 4 * e * e + 4 * e + 2 * e * inner + inner + e + 4 * e  # attention, MLP, two layer norms
    return 4 * (v * e + p * e + n * block + 2 * e)


def check_sizes(model_dir: Path, config: dict, weights: Path | None) -> None:
    """Refuse a config whose sizes are not positive integers, or that describes a model larger than this
    machine's memory or than its weights file, before anything is allocated; the message names the size."""
    import os

    for key in ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions"):
        value = config.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GptquantError(f"{model_dir}/config.json: {key} must be a positive integer, got {value!r}")
    if config["n_embd"] % config["n_head"]:
        raise GptquantError(f"{model_dir}/config.json: n_embd {config['n_embd']} is not a multiple of n_head {config['n_head']}")
    need = fp32_bytes(config)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    sizes = ", ".join(f"{k}={config[k]}" for k in ("n_layer", "n_embd", "vocab_size"))
    if memory and need > memory:
        raise GptquantError(f"{model_dir}/config.json: {sizes} describe a model of {need / 2**30:,.1f} GiB in fp32; "
                            f"this machine has {memory / 2**30:,.1f} GiB of memory; refusing before allocating it")
    if weights is not None and need > 4 * weights.stat().st_size + (1 << 20):  # fp16 files are half the fp32 size
        raise GptquantError(f"{model_dir}/config.json: {sizes} describe a model of {need / 2**20:,.1f} MiB in fp32, "
                            f"but {weights.name} holds {weights.stat().st_size / 2**20:,.1f} MiB: config and weights do not match")


def load_weights(model_dir: Path, weights: Path, config: dict):
    """GPT2LMHeadModel from safetensors, or from a .bin with torch.load(weights_only=True) only."""
    torch = require("torch", "train", "loading a GPT-2 checkpoint")
    transformers = require("transformers", "train", "loading a GPT-2 checkpoint")
    cfg = transformers.GPT2Config.from_pretrained(str(model_dir))
    cfg._attn_implementation = "eager"  # exportable and identical on CPU
    model = transformers.GPT2LMHeadModel(cfg)
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        try:
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise GptquantError(f"{weights}: refused or unreadable with weights_only=True ({type(exc).__name__})") from None
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if not any(k.startswith("transformer.") for k in state):
        state = {f"transformer.{k}" if not k.startswith("lm_head") else k: v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith((".attn.bias", ".attn.masked_bias")) and k != "lm_head.weight"]
    if missing:
        raise GptquantError(f"{weights}: weights missing for {len(missing)} parameters, e.g. {missing[0]}")
    if unexpected:
        raise GptquantError(f"{weights}: {len(unexpected)} unexpected tensors, e.g. {unexpected[0]} (not a GPT-2 checkpoint?)")
    if "lm_head.weight" not in state:
        model.tie_weights()
    emb_rows = model.transformer.wte.weight.shape[0]
    if emb_rows != int(config["vocab_size"]):
        raise GptquantError(f"{weights}: embedding has {emb_rows} rows, config says vocab_size {config['vocab_size']}")
    return model.eval()


def encode_torch(ckpt: Checkpoint, texts, max_length: int):
    """Torch tensors (input_ids, attention_mask) for a list of texts; never token_type_ids."""
    import torch

    from ..tokenize import encode

    ids, mask, _ = encode(ckpt.tokenizer, texts, ckpt.policy, max_length)
    return torch.from_numpy(ids), torch.from_numpy(mask)
