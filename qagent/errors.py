"""Errors a user can cause.

Every error a user can trigger (a typo in a name, a bad config value, a corrupt checkpoint)
is a :class:`QAgentError`. The CLI prints it as one line, with a hint where there is one, and
exits with status 2; it never shows a traceback for these.
"""

from __future__ import annotations

import errno


class QAgentError(Exception):
    """An error caused by user input, reported without a traceback.

    :param message: what went wrong, in one sentence.
    :param hint: what to do about it (optional).
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class ConfigError(QAgentError):
    """An unknown config key, or a value that fails validation."""


class UnknownNameError(QAgentError):
    """A registry lookup for a name nobody registered."""


class RegistryError(QAgentError):
    """A name registered twice, or an invalid registration."""


class PluginError(QAgentError):
    """A plugin that cannot be found or fails to import."""


class CheckpointError(QAgentError):
    """A missing, corrupt or incompatible checkpoint or run directory."""


# Optional packages and the extra that installs each (pyproject.toml's optional-dependencies).
OPTIONAL_PACKAGES: dict[str, str] = {
    "onnxruntime": "serve",
    "onnx": "export",
    "onnxscript": "export",
    "ale_py": "atari",
    "cv2": "atari",
    "stable_baselines3": "sb3",
    "minigrid": "minigrid",
    "imageio": "video",
    "imageio_ffmpeg": "video",
    "pygame": "video",
    "ray": "ray",
    "optuna": "ray",
}


def missing_extra(exc: BaseException) -> QAgentError | None:
    """The error to show for a missing optional package (which extra to install), else None."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    package = exc.name.split(".")[0]
    extra = OPTIONAL_PACKAGES.get(package)
    if extra is None:
        return None
    return QAgentError(
        f"this needs the optional package {package!r}, which is not installed",
        hint=f"pip install 'qagent[{extra}]'",
    )


# Write failures a user can cause or fix: a full disk, a file-size limit, a read-only folder.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def unwritable(exc: BaseException) -> QAgentError | None:
    """One line for a file that cannot be written (disk full, size limit, read-only), else None."""
    if not isinstance(exc, OSError) or exc.errno not in WRITE_ERRNOS:
        return None
    where = f" {exc.filename}" if exc.filename else ""
    return QAgentError(
        f"cannot write{where}: {exc.strerror or exc}",
        hint="free disk space, raise the file-size limit (ulimit -f) or use a writable folder",
    )
