"""The one exception hierarchy of llmclf.

Every error a user can cause or meet derives from `LlmclfError`. The CLI prints such an
error as one line on stderr and exits with `LlmclfError.exit_code`; anything else is a bug
and shows its traceback.
"""

from __future__ import annotations


class LlmclfError(Exception):
    """Base class: a problem the user can fix; the message says how."""

    exit_code = 1


class UsageError(LlmclfError):
    """Bad options or arguments (exit code 2, like Click's own usage errors)."""

    exit_code = 2


class UnknownNameError(UsageError, KeyError):
    """A registry lookup for a name nobody registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateNameError(LlmclfError):
    """A name registered twice without ``override=True``."""


class ConfigError(UsageError):
    """A configuration field has an invalid value; the message names the field."""


class DataError(LlmclfError):
    """A dataset could not be read or is unusable (missing columns, one class, bad bytes, ...)."""


class AssetError(LlmclfError):
    """A file that must be downloaded is missing, corrupt, or could not be fetched."""


class WeightsError(LlmclfError):
    """Model weights that do not match the architecture, or a corrupt weights file."""


class CheckpointError(LlmclfError):
    """A run directory that is missing files or cannot be loaded."""


class ExportError(LlmclfError):
    """A run that cannot be exported in the format asked for; the message says why."""


class LlmclfWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints one line)."""


class UnfinishedRunWarning(LlmclfWarning):
    """A run directory whose training never finished is being used to predict or evaluate."""


class BatchDependentRunWarning(LlmclfWarning):
    """A run saved by an earlier llmclf whose padding and pooling depend on the batch: its
    texts are predicted one at a time."""
