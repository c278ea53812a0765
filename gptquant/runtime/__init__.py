"""The torch-free runtime: read news, open a model bundle with onnxruntime, score texts into features.

Attributes load lazily so `gptquant model verify` does not pay for onnxruntime, and nothing here
ever imports torch or transformers.
"""
_LAZY = {
    "Scorer": "gptquant.runtime.scorer",
    "load_model": "gptquant.runtime.scorer",
    "read_news": "gptquant.runtime.news",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gptquant.runtime' has no attribute {name!r}")
