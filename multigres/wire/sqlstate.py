"""SQLSTATE codes that Multigres reports or reacts to, named as in Postgres's errcodes.txt.

A client sees the same code from Multigres as it would from Postgres for the same fault, so
drivers and applications that switch on SQLSTATE (retry on 40001, reconnect on 57P01, ...)
keep working. Codes are grouped by class (the first two characters).
"""

from __future__ import annotations

from typing import Final

# Class 00: successful completion.
SUCCESSFUL_COMPLETION: Final = "00000"

# Class 08: connection exception.
CONNECTION_EXCEPTION: Final = "08000"
CONNECTION_DOES_NOT_EXIST: Final = "08003"
CONNECTION_FAILURE: Final = "08006"
SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION: Final = "08001"
SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION: Final = "08004"
PROTOCOL_VIOLATION: Final = "08P01"

# Class 0A: feature not supported (also: an unsupported protocol version, GSSAPI encryption).
FEATURE_NOT_SUPPORTED: Final = "0A000"

# Class 22: data exception.
INVALID_PARAMETER_VALUE: Final = "22023"
INVALID_TEXT_REPRESENTATION: Final = "22P02"

# Class 25: invalid transaction state.
INVALID_TRANSACTION_STATE: Final = "25000"
ACTIVE_SQL_TRANSACTION: Final = "25001"
READ_ONLY_SQL_TRANSACTION: Final = "25006"
IN_FAILED_SQL_TRANSACTION: Final = "25P02"
IDLE_IN_TRANSACTION_SESSION_TIMEOUT: Final = "25P03"
TRANSACTION_TIMEOUT: Final = "25P04"  # Postgres 17+

# Class 26: invalid SQL statement name (a prepared statement that does not exist).
INVALID_SQL_STATEMENT_NAME: Final = "26000"

# Class 28: invalid authorization specification.
INVALID_AUTHORIZATION_SPECIFICATION: Final = "28000"
INVALID_PASSWORD: Final = "28P01"

# Class 34: invalid cursor name (a portal that does not exist).
INVALID_CURSOR_NAME: Final = "34000"

# Class 3D: invalid catalog name (a database that does not exist).
INVALID_CATALOG_NAME: Final = "3D000"

# Class 40: transaction rollback (clients may retry the transaction).
TRANSACTION_ROLLBACK: Final = "40000"
SERIALIZATION_FAILURE: Final = "40001"
DEADLOCK_DETECTED: Final = "40P01"
# A statement whose outcome is not all-or-nothing: a MULTI commit that failed on some shards.
STATEMENT_COMPLETION_UNKNOWN: Final = "40003"

# Class 42: syntax error or access rule violation.
SYNTAX_ERROR: Final = "42601"
INSUFFICIENT_PRIVILEGE: Final = "42501"
UNDEFINED_OBJECT: Final = "42704"
DUPLICATE_CURSOR: Final = "42P03"
DUPLICATE_PREPARED_STATEMENT: Final = "42P05"

# Class 53: insufficient resources.
INSUFFICIENT_RESOURCES: Final = "53000"
OUT_OF_MEMORY: Final = "53200"
TOO_MANY_CONNECTIONS: Final = "53300"

# Class 54: program limit exceeded (e.g. a message over the size limit).
PROGRAM_LIMIT_EXCEEDED: Final = "54000"

# Class 55: object not in prerequisite state.
OBJECT_NOT_IN_PREREQUISITE_STATE: Final = "55000"
CANT_CHANGE_RUNTIME_PARAM: Final = "55P02"
LOCK_NOT_AVAILABLE: Final = "55P03"

# Class 57: operator intervention.
QUERY_CANCELED: Final = "57014"
ADMIN_SHUTDOWN: Final = "57P01"
CRASH_SHUTDOWN: Final = "57P02"
CANNOT_CONNECT_NOW: Final = "57P03"
DATABASE_DROPPED: Final = "57P04"
IDLE_SESSION_TIMEOUT: Final = "57P05"  # Postgres 14+

# Class XX: internal error.
INTERNAL_ERROR: Final = "XX000"


def _names() -> dict[str, str]:
    return {
        value: name.lower()
        for name, value in globals().items()
        if name.isupper() and isinstance(value, str) and len(value) == 5
    }


# Code -> Postgres condition name ("08P01" -> "protocol_violation"), for logs and metrics.
CONDITION_NAMES: Final[dict[str, str]] = _names()


def condition_name(code: str) -> str:
    """The condition name of a code, or the code itself when it is not one listed here."""
    return CONDITION_NAMES.get(code, code)


def sqlstate_class(code: str) -> str:
    """The class of a code: its first two characters ("08" for every connection exception)."""
    return code[:2]


def is_connection_error(code: str) -> bool:
    """True for class 08 (connection exception) and 57P01..57P05 (shutdown, cannot connect,
    database dropped, idle session timeout): the session is gone, not just the statement."""
    return code.startswith("08") or code in _SESSION_ENDING_57


_SESSION_ENDING_57: Final = frozenset(
    {ADMIN_SHUTDOWN, CRASH_SHUTDOWN, CANNOT_CONNECT_NOW, DATABASE_DROPPED, IDLE_SESSION_TIMEOUT}
)
