"""Exceptions the core raises. Each message says what was expected, what came, and what to do."""


class VodeError(Exception):
    """Base class of every error vode_ros raises on purpose."""


class ConfigError(VodeError):
    """A configuration value or file is wrong."""


class InputError(VodeError):
    """A frame or camera model cannot be used; the frame is skipped.

    ``kind`` names the fault (``encoding``, ``size``, ``camera``, ``stamp``, ...) so callers can
    throttle log lines per kind.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class ModelError(VodeError):
    """A model file is missing, unreadable, or breaks the model contract."""


class ModelOutputError(InputError):
    """A model produced non-finite or out-of-contract values for one frame."""

    def __init__(self, message: str):
        super().__init__("model_output", message)
