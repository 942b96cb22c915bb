"""Errors of the sharding model.

:class:`VSchemaError` lists every problem of a document, each as ``path: message`` where the
path names the place in the JSON (``tables.orders.column_vindexes[0].name``), so that a user
can find the field to fix. :class:`VindexError` is a value a vindex cannot map (a text that is
not an integer for a ``hash`` vindex), raised at routing time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class VSchemaError(ValueError):
    """An invalid VSchema document: ``problems`` says what is wrong where."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        if len(problems) == 1:
            text = str(problems[0])
        else:
            text = f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)
        super().__init__(text)


class VindexError(ValueError):
    """A value that a vindex cannot map, or a lookup that found what must not be."""
