"""Errors a user can cause and fix; the CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """A bad config value, an incompatible combination, or missing data."""


class ConfigError(UserError):
    """A config value out of range or an incompatible combination of options."""


class DataError(UserError):
    """A dataset that is absent and cannot be downloaded."""


class NonFiniteError(UserError):
    """Training produced a NaN or infinite value."""
