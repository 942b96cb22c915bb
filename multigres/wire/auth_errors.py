"""Errors of authentication, each carrying the SQLSTATE a client sees.

The protocol code turns an ``AuthFailed`` into an ErrorResponse with ``sqlstate``, ``message``
and, when set, ``detail``. ``log_detail`` is for the server log only: like Postgres, we never tell
a client *why* a password was wrong (wrong proof, unknown user, no usable secret), since that
would let it probe which users exist.
"""

from __future__ import annotations

# SQLSTATEs (Postgres's errcodes.txt).
INVALID_PASSWORD = "28P01"
INVALID_AUTHORIZATION_SPECIFICATION = "28000"
PROTOCOL_VIOLATION = "08P01"
# What a client reports when it cannot log in to a server (libpq uses it for failed connects);
# the pooler's side towards Postgres uses it for a server that fails to authenticate itself.
UNABLE_TO_ESTABLISH_CONNECTION = "08001"


class AuthFailed(Exception):
    """Authentication did not succeed; ``sqlstate`` and ``message`` are what the client sees."""

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str = INVALID_PASSWORD,
        detail: str | None = None,
        log_detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail
        self.log_detail = log_detail

    def __str__(self) -> str:
        text = f"{self.message}: {self.detail}" if self.detail else self.message
        return f"{text} ({self.log_detail})" if self.log_detail else text


class AuthProtocolError(AuthFailed):
    """The peer broke the authentication exchange's format (SQLSTATE 08P01)."""

    def __init__(
        self, message: str, *, detail: str | None = None, log_detail: str | None = None
    ) -> None:
        super().__init__(message, sqlstate=PROTOCOL_VIOLATION, detail=detail, log_detail=log_detail)


def password_failed(username: str, log_detail: str | None = None) -> AuthFailed:
    """The one failure a client sees for any wrong password or unknown user (as Postgres)."""
    return AuthFailed(
        f'password authentication failed for user "{username}"', log_detail=log_detail
    )
