"""The one error type for bad input, shared by every layer.

It lives in the bottom layer (`search_spaces`) so that `trainable` and `sweep` can raise and catch the
same class without importing upward. The CLI turns it into one line on stderr and exit code 2.
"""


class ConfigError(ValueError):
    """Bad user input. `field` is the dotted path of the offending field, e.g. ``schedule.warmup_frac``."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def prefixed(self, prefix: str) -> "ConfigError":
        """The same error, with its field nested under `prefix` (e.g. ``trainer`` + ``lr`` -> ``trainer.lr``)."""
        return ConfigError(f"{prefix}.{self.field}" if self.field else prefix, self.message)
