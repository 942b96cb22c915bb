"""Errors the pooler reports to clients: each with its SQLSTATE and a message to act on.

``PoolerError`` is ``multigres.wire.errors.PgError`` with the pooler's argument order (the
SQLSTATE first, as the pooler's call sites read best) and ``to_message(severity=...)``, which
reports the same error with another severity (FATAL when the pooler closes the connection).
"""

from __future__ import annotations

from collections.abc import Mapping

from multigres.wire.errors import PgError


class PoolerError(PgError):
    def __init__(
        self,
        sqlstate: str,
        message: str,
        *,
        severity: str = "ERROR",
        detail: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, sqlstate, severity=severity, detail=detail, hint=hint)

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> PoolerError:
        """An error Postgres sent, passed on with every field as it was."""
        received = PgError.from_fields(fields)
        err = cls(received.sqlstate, received.message)
        err.__dict__.update(received.__dict__)
        return err

    def to_message(self, severity: str | None = None) -> bytes:
        if severity is None:
            return super().to_message()
        fields = self.fields()
        fields["S"] = fields["V"] = severity
        return PgError.from_fields(fields).to_message()
