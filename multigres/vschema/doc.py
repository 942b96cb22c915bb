"""Reading a JSON document with errors that name the path of the bad field.

A :class:`Checker` collects :class:`~multigres.vschema.errors.Problem` s instead of stopping at
the first, so that one ``vschema apply`` shows everything to fix; readers return None for a
value they refused, and the caller skips what depends on it (no second error for the same
mistake).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from multigres.vschema.errors import Problem, VSchemaError

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def join(path: str, key: str | int) -> str:
    """``tables`` + ``orders`` -> ``tables.orders``; + 0 -> ``[0]``; odd keys are quoted."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    part = key if _PLAIN_KEY.match(key) else json.dumps(key)
    return f"{path}.{part}" if path else part


def q(name: object) -> str:
    """A name or value quoted as in the JSON document, for messages."""
    return json.dumps(name, ensure_ascii=False)


def type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class Checker:
    def __init__(self, strict: bool = True) -> None:
        # Not strict: unknown fields are ignored (a document written by a newer version).
        self.strict = strict
        self.problems: list[Problem] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def raise_if_problems(self) -> None:
        if self.problems:
            raise VSchemaError(list(self.problems))

    def obj(
        self,
        value: Any,
        path: str,
        fields: Iterable[str] | None = None,
        required: Iterable[str] = (),
    ) -> dict[str, Any] | None:
        """``value`` as a JSON object; with ``fields``, other keys are refused (when strict)."""
        if not isinstance(value, dict):
            self.error(path, f"expected an object, got {type_name(value)}")
            return None
        if fields is not None and self.strict:
            allowed = set(fields)
            for key in value:
                if key not in allowed:
                    self.error(
                        join(path, key),
                        f"unknown field (expected one of: {', '.join(sorted(allowed))})",
                    )
        for key in required:
            if key not in value:
                self.error(join(path, key), "missing (required)")
        return value

    def string(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            self.error(path, f"expected a string, got {type_name(value)}")
            return None
        if not value:
            self.error(path, "must not be empty")
            return None
        return value

    def boolean(self, value: Any, path: str) -> bool | None:
        # Vitess writes vindex params as strings: "true"/"false" are accepted too.
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return bool(value == "true")
        self.error(path, f"expected true or false, got {json.dumps(value)}")
        return None

    def integer(self, value: Any, path: str, lo: int, hi: int) -> int | None:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"expected an integer, got {type_name(value)}")
            return None
        if not lo <= value <= hi:
            self.error(path, f"{value} is out of range ({lo}..{hi})")
            return None
        return value

    def names(self, value: Any, path: str) -> list[str] | None:
        """A non-empty list of names: a JSON list of strings, or one comma-separated string."""
        if isinstance(value, str):
            items: list[Any] = [s.strip() for s in value.split(",")]
        elif isinstance(value, list):
            items = value
        else:
            self.error(path, f"expected a list of names, got {type_name(value)}")
            return None
        if not items:
            self.error(path, "must name at least one")
            return None
        out: list[str] = []
        for i, item in enumerate(items):
            where = join(path, i) if isinstance(value, list) else path
            if not isinstance(item, str) or not item:
                self.error(where, f"expected a non-empty name, got {json.dumps(item)}")
                return None
            if item in out:
                self.error(where, f"{q(item)} is named twice")
                return None
            out.append(item)
        return out


class Params:
    """The ``params`` object of one vindex; each reader marks its key as known, and
    :meth:`finish` refuses the others (a misspelt parameter must not be silently ignored)."""

    def __init__(self, checker: Checker, raw: dict[str, Any], path: str) -> None:
        self.checker = checker
        self.raw = raw
        self.path = path
        self._known: set[str] = set()
        self._before = len(checker.problems)

    def at(self, key: str) -> str:
        return join(self.path, key)

    def error(self, key: str, message: str) -> None:
        self.checker.error(self.at(key), message)

    @property
    def failed(self) -> bool:
        return len(self.checker.problems) > self._before

    def _get(self, key: str, required: bool) -> Any:
        self._known.add(key)
        if key not in self.raw:
            if required:
                self.error(key, "missing (required)")
            return None
        return self.raw[key]

    def string(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        value = self._get(key, required)
        return default if value is None else self.checker.string(value, self.at(key))

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        b = self.checker.boolean(value, self.at(key))
        return default if b is None else b

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self._get(key, False)
        if value is None:
            return default
        n = self.checker.integer(value, self.at(key), lo, hi)
        return default if n is None else n

    def names(self, key: str, required: bool = False) -> list[str] | None:
        value = self._get(key, required)
        return None if value is None else self.checker.names(value, self.at(key))

    def int_list(self, key: str) -> list[int] | None:
        """A list of integers: a JSON list, or one comma-separated string (Vitess's form)."""
        value = self._get(key, False)
        if value is None:
            return None
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            self.error(key, f"expected a list of integers, got {type_name(value)}")
            return None
        out: list[int] = []
        for item in items:
            if isinstance(item, str) and item.strip().isdigit():
                item = int(item)
            if isinstance(item, bool) or not isinstance(item, int):
                self.error(key, f"expected a list of integers, got {json.dumps(value)}")
                return None
            out.append(item)
        return out

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self._get(key, False)
        if value is None:
            return default
        if value not in choices:
            self.error(key, f"{json.dumps(value)} is not one of: {', '.join(choices)}")
            return default
        return str(value)

    def finish(self) -> None:
        if not self.checker.strict:
            return
        for key in self.raw:
            if key not in self._known:
                known = ", ".join(sorted(self._known)) or "none"
                self.error(key, f"unknown parameter (this vindex takes: {known})")
