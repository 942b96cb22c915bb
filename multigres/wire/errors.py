"""``PgError``: a Postgres error as Multigres raises it, reports it and relays it.

One class serves both directions: an error Multigres raises itself (a pool timeout, a limit,
a protocol violation) becomes the ErrorResponse a client sees with ``to_message()``, and an
ErrorResponse received from Postgres becomes a ``PgError`` with ``from_fields()`` /
``from_payload()``, every field kept (also those it does not name), so that relaying it loses
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from multigres._cy.buffer import ProtocolError
from multigres._cy.protocol import (
    build_error_response,
    build_notice_response,
    parse_error_response,
)
from multigres.wire import sqlstate as codes

# Field letter -> attribute, in the order Postgres sends them (S and V come first: some
# clients read the severity before anything else). Letters from "Error and Notice Message
# Fields" in the protocol documentation.
FIELDS: Final[dict[str, str]] = {
    "S": "localized_severity",
    "V": "severity",
    "C": "sqlstate",
    "M": "message",
    "D": "detail",
    "H": "hint",
    "P": "position",
    "p": "internal_position",
    "q": "internal_query",
    "W": "where",
    "s": "schema_name",
    "t": "table_name",
    "c": "column_name",
    "d": "data_type_name",
    "n": "constraint_name",
    "F": "file",
    "L": "line",
    "R": "routine",
}

# Severities after which the server closes the session.
_FATAL_SEVERITIES: Final = frozenset({"FATAL", "PANIC"})


class PgError(Exception):
    """An error with a SQLSTATE and the fields of an ErrorResponse.

    ``severity`` is the non-localized severity (ERROR, FATAL, PANIC; WARNING, NOTICE, ... for
    notices); ``localized_severity`` the one in the server's language, the same unless a
    received error said otherwise. Fields with no attribute are kept in ``extra`` by letter.
    """

    severity: str
    localized_severity: str
    sqlstate: str
    message: str
    detail: str | None
    hint: str | None
    position: str | None
    internal_position: str | None
    internal_query: str | None
    where: str | None
    schema_name: str | None
    table_name: str | None
    column_name: str | None
    data_type_name: str | None
    constraint_name: str | None
    file: str | None
    line: str | None
    routine: str | None
    extra: dict[str, str]

    def __init__(
        self,
        message: str,
        sqlstate: str = codes.INTERNAL_ERROR,
        *,
        severity: str = "ERROR",
        detail: str | None = None,
        hint: str | None = None,
        position: int | str | None = None,
        **fields: str | None,
    ) -> None:
        """``fields`` takes any other attribute of FIELDS by name (``where=``, ``table_name=``,
        ``localized_severity=``, ...)."""
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.severity = severity
        self.localized_severity = severity
        self.detail = detail
        self.hint = hint
        self.position = None if position is None else str(position)
        self.internal_position = None
        self.internal_query = None
        self.where = None
        self.schema_name = None
        self.table_name = None
        self.column_name = None
        self.data_type_name = None
        self.constraint_name = None
        self.file = None
        self.line = None
        self.routine = None
        self.extra = {}
        for name, value in fields.items():
            if name not in _SETTABLE:
                raise TypeError(f"PgError() got an unexpected keyword argument {name!r}")
            if name == "localized_severity" and value is None:
                continue
            setattr(self, name, value)

    # -- from what Postgres sent -----------------------------------------------------------

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> PgError:
        """Build from {field letter: text}, as ``parse_error_response`` returns.

        A response missing fields gets what a client would assume: severity ERROR (or the
        localized one when only S is there), SQLSTATE XX000, an empty message.
        """
        severity = fields.get("V") or fields.get("S") or "ERROR"
        err = cls(
            fields.get("M", ""),
            fields.get("C", codes.INTERNAL_ERROR),
            severity=severity,
        )
        err.localized_severity = fields.get("S", severity)
        for letter, value in fields.items():
            attr = FIELDS.get(letter)
            if attr is None:
                err.extra[letter] = value
            elif letter not in "SVCM":
                setattr(err, attr, value)
        return err

    @classmethod
    def from_payload(cls, payload: bytes) -> PgError:
        """Build from an ErrorResponse (or NoticeResponse) payload; ProtocolError if malformed."""
        return cls.from_fields(parse_error_response(payload))

    @classmethod
    def from_protocol_error(cls, exc: ProtocolError) -> PgError:
        """The FATAL error to send a peer that broke the protocol, before closing."""
        return cls(str(exc), codes.PROTOCOL_VIOLATION, severity="FATAL")

    # -- to what a client receives --------------------------------------------------------

    def fields(self) -> dict[str, str]:
        """{field letter: text} for every field set, in the order Postgres sends them."""
        out: dict[str, str] = {}
        for letter, attr in FIELDS.items():
            value = getattr(self, attr)
            if value is not None:
                out[letter] = value
        out.update(self.extra)
        return out

    def to_message(self) -> bytes:
        """This error as an ErrorResponse message ('E'), ready to send."""
        return build_error_response(self.fields())

    def to_notice_message(self) -> bytes:
        """These fields as a NoticeResponse message ('N') (severity WARNING, NOTICE, ...)."""
        return build_notice_response(self.fields())

    @property
    def is_fatal(self) -> bool:
        """True when the session ends with this error (FATAL or PANIC)."""
        return self.severity in _FATAL_SEVERITIES

    def __str__(self) -> str:
        text = f"{self.severity}: {self.message} (SQLSTATE {self.sqlstate})"
        if self.detail:
            text += f"\nDETAIL: {self.detail}"
        if self.hint:
            text += f"\nHINT: {self.hint}"
        return text

    def __repr__(self) -> str:
        return f"PgError({self.fields()!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # Exceptions pickle through args: rebuild from the fields instead (multiprocessing,
        # workers handing errors over).
        return (_from_fields, (self.fields(),))


def _from_fields(fields: dict[str, str]) -> PgError:
    return PgError.from_fields(fields)


_SETTABLE: Final = frozenset(FIELDS.values()) - {"severity", "sqlstate", "message"}
