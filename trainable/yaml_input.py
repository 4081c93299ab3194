"""YAML a user wrote, read strictly: every way it can be wrong is one `ConfigError` line, never a traceback.

* Bytes that are not UTF-8 are refused, with the offset of the first bad byte.
* A syntax error names the file, line and column (YAML's own message spans 4-8 lines and names
  `<unicode string>`).
* A key given twice in one mapping is refused (PyYAML keeps the last one silently).
* Nesting too deep for the parser is refused instead of a RecursionError.
* Numbers in exponent form without a dot (`2e-1`, `1E5`) are floats, as in YAML 1.2 and JSON; PyYAML's YAML 1.1
  reads them as strings, so `cooldown_frac: 2e-1` was refused as text while `lr: 3e-3` was accepted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from search_spaces.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads `1e-3`-style numbers as floats."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key (a list or mapping): SafeLoader refuses it with a clear error
                continue
            if duplicate:
                mark = key_node.start_mark
                raise _Duplicate(f"line {mark.line + 1}, column {mark.column + 1}: key {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Duplicate(Exception):
    pass


_EXP_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+0123456789"))


def parse_yaml(text: str | bytes, source: str, field: str = "config") -> Any:
    """The YAML document in `text` (read from `source`, named in messages); a ConfigError on `field` if bad."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(field, f"{source} is not UTF-8 text (byte 0x{text[err.start]:02x} at offset "
                                     f"{err.start})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except _Duplicate as err:
        raise ConfigError(field, f"{source} {err}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = err.problem or err.context or "not valid YAML"
        raise ConfigError(field, f"{source}{where}: {what}") from None
    except yaml.YAMLError as err:
        raise ConfigError(field, f"{source} is not valid YAML: {str(err).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(field, f"{source} is nested too deeply") from None


def read_yaml_mapping(path: str | Path, field: str = "config") -> dict:
    """The mapping in YAML file `path` ({} for an empty file); a ConfigError on `field` for anything else."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(field, f"cannot read {path}: {err.strerror or err}") from None
    data = parse_yaml(raw, str(path), field)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(field, f"{path} must hold a mapping at the top level, not a {type(data).__name__}")
    return data
