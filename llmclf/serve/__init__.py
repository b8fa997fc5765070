"""``llmclf serve``: a trained run behind an HTTP API (FastAPI + uvicorn, the ``serve`` extra).

```python
from llmclf.serve import ServeConfig, create_app, serve

serve(ServeConfig(run="runs/sms", port=8000))  # blocks until Ctrl+C / SIGTERM
app = create_app("runs/sms", max_batch=64)      # or mount the ASGI app in your own server
```

Importing this package needs neither FastAPI nor uvicorn; `serve` and `create_app`
raise one `llmclf.errors.LlmclfError` naming the extra when they are missing.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError, ConfigError, LlmclfError
from ..options import check_device

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..inference import Classifier

EXTRA_HINT = "pip install 'llmclf[serve]'"
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_CHARS = 10_000
CONFIG_ENV = "LLMCLF_SERVE_CONFIG"  # how ServeConfig reaches worker processes (--workers > 1)


def require_extra() -> None:
    """Raise a one-line error naming the ``serve`` extra unless FastAPI and uvicorn import."""
    missing = []
    for module in ("fastapi", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise LlmclfError(
            f"llmclf serve needs {' and '.join(missing)}, not installed here; run: {EXTRA_HINT}"
        )


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``llmclf serve`` takes; the CLI builds one of these and calls `serve`."""

    run: str  # run directory written by llmclf fit
    host: str = "127.0.0.1"  # address to bind; 0.0.0.0 listens on every interface
    port: int = 8000  # 0 picks a free port
    workers: int = 1  # processes, each with its own copy of the model
    max_batch: int = DEFAULT_MAX_BATCH  # most texts in one request (413 above)
    max_chars: int = DEFAULT_MAX_CHARS  # longest text in characters (413 above)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps

    def __post_init__(self) -> None:
        if isinstance(self.run, os.PathLike):
            object.__setattr__(self, "run", os.fspath(self.run))
        if not isinstance(self.run, str) or not self.run.strip():
            raise ConfigError(f"run: must be a run directory path, got {self.run!r}")
        for name in ("workers", "max_batch", "max_chars"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"{name}: must be an integer >= 1, got {value!r}")
        if not _is_int(self.port) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port: must be an integer in 0..65535, got {self.port!r}")
        check_device(self.device)
        if not isinstance(self.host, str) or not self.host.strip():
            raise ConfigError(
                f"host: must be a non-empty address such as 127.0.0.1, got {self.host!r}"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def create_app(
    model: Classifier | str | Path,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_chars: int = DEFAULT_MAX_CHARS,
    device: str = "auto",
    run_dir: str | Path | None = None,
) -> FastAPI:
    """The ASGI app serving ``model`` (a loaded `llmclf.Classifier` or a run directory).

    See `llmclf.serve.app.create_app` for the endpoints.
    """
    require_extra()
    from .app import create_app as _create_app

    return _create_app(
        model, max_batch=max_batch, max_chars=max_chars, device=device, run_dir=run_dir
    )


def serve(config: ServeConfig) -> None:
    """Load the run and serve it with uvicorn until interrupted (Ctrl+C or SIGTERM)."""
    require_extra()
    import uvicorn

    check_port_free(config.host, config.port)
    if config.workers == 1:
        app = create_app(
            config.run,
            max_batch=config.max_batch,
            max_chars=config.max_chars,
            device=config.device,
        )
        uvicorn.run(app, host=config.host, port=config.port)
        return
    # Several processes: each worker builds its own app (and model) from the environment.
    check_run_dir(config.run)
    _warn_if_unfinished(Path(config.run))  # once here; the workers keep quiet about it
    os.environ[CONFIG_ENV] = config.to_json()
    uvicorn.run(
        "llmclf.serve.app:app_from_environment",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
    )


def check_port_free(host: str, port: int) -> None:
    """Fail with one line, before the model loads, when ``host:port`` cannot be listened on."""
    if port == 0:  # any free port
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise LlmclfError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port "
                "or stop what is using it"
            ) from None


def check_run_dir(run: str | Path) -> None:
    """Fail early, with one line, when ``run`` cannot be a complete run directory."""
    from ..runs import checkpoint as ckpt

    run = Path(run)
    if not run.is_dir():
        raise CheckpointError(
            f"run directory {run} does not exist; pass a directory made by llmclf fit"
        )
    for name in (ckpt.MANIFEST_FILE, ckpt.MODEL_FILE):
        if not (run / name).is_file():
            raise CheckpointError(f"{run / name} is missing; is {run} a complete llmclf run?")


def _warn_if_unfinished(run: Path) -> None:
    import warnings

    from ..errors import UnfinishedRunWarning
    from ..inference import unfinished_message
    from ..runs import checkpoint as ckpt

    manifest = ckpt.read_json(run / ckpt.MANIFEST_FILE)
    if isinstance(manifest, dict) and not manifest.get("complete", True):
        warnings.warn(unfinished_message(run, manifest), UnfinishedRunWarning, stacklevel=3)


__all__ = [
    "ServeConfig",
    "check_port_free",
    "check_run_dir",
    "create_app",
    "require_extra",
    "serve",
]
