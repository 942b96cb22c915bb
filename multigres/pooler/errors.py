"""Errors the pooler reports to clients: each with its SQLSTATE and a message to act on."""

from __future__ import annotations

from multigres.pooler import msgs


class PoolerError(Exception):
    def __init__(
        self,
        sqlstate: str,
        message: str,
        *,
        severity: str = "ERROR",
        detail: str | None = None,
        hint: str | None = None,
        fields: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.severity = severity
        self.detail = detail
        self.hint = hint
        # An error Postgres sent, passed on with every field as it was.
        self.fields = fields

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> PoolerError:
        return cls(fields.get("C", "XX000"), fields.get("M", "unknown error"),
                   severity=fields.get("S", "ERROR"), fields=fields)

    def to_message(self, severity: str | None = None) -> bytes:
        if self.fields is not None and severity is None:
            from multigres._cy.buffer import WriteBuffer

            buf = WriteBuffer()
            buf.start_message(ord("E"))
            for k, v in self.fields.items():
                buf.write_byte(ord(k))
                buf.write_str(v)
            buf.write_byte(0)
            buf.end_message()
            return buf.getvalue()
        return msgs.error_response(self.sqlstate, self.message, severity=severity or
                                   self.severity, detail=self.detail, hint=self.hint)
