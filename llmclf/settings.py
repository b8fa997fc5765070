"""Environment settings: where assets live and whether the network may be used."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path("~/.cache/llmclf")


def home() -> Path:
    """The asset cache, ``$LLMCLF_HOME`` or ``~/.cache/llmclf``."""
    return Path(os.environ.get("LLMCLF_HOME") or DEFAULT_HOME).expanduser()


def offline() -> bool:
    """True when ``LLMCLF_OFFLINE`` is set to a true value: never touch the network."""
    return os.environ.get("LLMCLF_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def mirror() -> str | None:
    """``$LLMCLF_MIRROR``: a base URL laid out like ``$LLMCLF_HOME``, used for every download.

    Hugging Face files use `hf_endpoint` instead when that is set. Anything but an http://,
    https:// or file:// URL is a `llmclf.errors.UsageError` naming the variable.
    """
    value = os.environ.get("LLMCLF_MIRROR", "").strip() or None
    if value is not None and not value.lower().startswith(MIRROR_SCHEMES):
        from .errors import UsageError

        raise UsageError(
            f"LLMCLF_MIRROR={value} is not a URL; set it to an http://, https:// or file:// URL "
            "laid out like $LLMCLF_HOME, or unset it"
        )
    return value


MIRROR_SCHEMES = ("http://", "https://", "file://")


def hf_endpoint() -> str | None:
    """``$LLMCLF_HF_ENDPOINT``, else ``$HF_ENDPOINT``: replaces ``https://huggingface.co``."""
    for name in ("LLMCLF_HF_ENDPOINT", "HF_ENDPOINT"):
        if value := os.environ.get(name, "").strip():
            return value
    return None


def debug() -> bool:
    """True when ``LLMCLF_DEBUG`` asks the CLI for full tracebacks."""
    return os.environ.get("LLMCLF_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def sms_spam_path() -> Path:
    return home() / "sms_spam" / "SMSSpamCollection"


def gpt2_bpe_dir() -> Path:
    """Holds ``encoder.json`` and ``vocab.bpe``."""
    return home() / "gpt2"


def backbone_weights_path(name: str) -> Path:
    return home() / "backbones" / name / "model.safetensors"


def process_rank() -> int:
    """This process's rank in a ``torchrun`` job (``$RANK`` when ``$WORLD_SIZE`` > 1), else 0.

    Read from the environment, without torch, so the CLI can print once per job.
    """
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return 0
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0
