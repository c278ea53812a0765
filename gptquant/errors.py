"""Errors a user should read as one line (the CLI prints them without a traceback)."""


class GptquantError(Exception):
    """A problem with the user's input, files or environment, stated in one line."""


class MissingExtra(GptquantError):
    """A verb needs an optional extra (e.g. torch for training) that is not installed."""

    def __init__(self, module: str, extra: str, what: str = ""):
        need = f" for {what}" if what else ""
        super().__init__(f"'{module}' is not installed{need}: pip install 'gptquant[{extra}]'")


def require(module: str, extra: str, what: str = ""):
    """Import an optional dependency or raise MissingExtra naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(module, extra, what) from exc
