"""Reading a service's YAML settings file (``--config``), with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_settings(path: str | Path, error: type[Exception]) -> dict[str, Any]:
    """The file's mapping of settings; ``error`` (the service's ConfigError) with a message
    naming the file when it cannot be read or is not a mapping."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise error(f"cannot read config file {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise error(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping of settings (key: value lines)")
    return raw


_TRUE = ("on", "true", "yes", "1")
_FALSE = ("off", "false", "no", "0")


def parse_on_off(value: Any) -> bool | None:
    """A boolean setting from YAML (true/false) or a word (on/off, true/false, yes/no, 1/0);
    None when it is neither."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    return None
