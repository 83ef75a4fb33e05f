"""Exceptions whose messages name the offending key, file or line."""


class SekdError(Exception):
    """Base class: a problem with the user's input, reported without a traceback-worthy bug."""


class ConfigError(SekdError):
    """The configuration is invalid; the message names the key (dotted path)."""


class DataError(SekdError):
    """A data file is invalid; the message names the file and, where it applies, the line."""


class NonFiniteError(SekdError):
    """NaN or inf in a model's logits or in the loss; the message names the step and the model."""
