"""Exceptions whose messages name the offending key, file or line."""


class SekdError(Exception):
    """Base class: a problem with the user's input, reported without a traceback-worthy bug."""


class ConfigError(SekdError):
    """The configuration is invalid; the message names the key (dotted path)."""


class DataError(SekdError):
    """A data file is invalid; the message names the file and, where it applies, the line."""


class NonFiniteError(SekdError):
    """NaN or inf in a model's logits or in the loss; the message names the step and the model."""


class DiskFullError(SekdError, OSError):
    """A write ran out of space: no space left on the device (ENOSPC) or over a quota (EDQUOT).

    The message names the path being written and the free space on its file system; the partial
    write is removed (sekd.atomic.replacing, sekd.train.checkpoints), what existed before is
    left as it was, and a rerun once space is freed picks up from there. An OSError too (errno
    ENOSPC or EDQUOT), so that code handling OSError handles it; `path` and `free` (bytes free
    when it failed, None if unknown) as attributes."""

    def __init__(self, message: str, *, path: str, free: int | None, code: int = 28):
        super().__init__(message)
        self.errno = code
        self.path = path
        self.free = free
