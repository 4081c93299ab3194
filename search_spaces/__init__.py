"""Learning-rate schedule shapes as data, named presets and search spaces. Pure Python + numpy."""

from search_spaces.errors import ConfigError

__all__ = ["ConfigError"]
