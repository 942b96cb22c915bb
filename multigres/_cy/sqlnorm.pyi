"""Type stub for the compiled module multigres._cy.sqlnorm (pyx/sqlnorm.pyx)."""

import enum
from collections.abc import Sequence
from typing import final

OID_UNKNOWN: int
OID_INT4: int
OID_INT8: int
OID_NUMERIC: int
OID_BIT: int

class StatementKind(enum.IntEnum):
    READ = 0
    WRITE = 1
    TRANSACTION = 2
    SESSION = 3
    DDL = 4
    OTHER = 5

class TxVerb(enum.IntEnum):
    NONE = 0
    BEGIN = 1
    COMMIT = 2
    ROLLBACK = 3
    SAVEPOINT = 4
    RELEASE = 5
    ROLLBACK_TO = 6
    PREPARE_TRANSACTION = 7
    COMMIT_PREPARED = 8
    ROLLBACK_PREPARED = 9
    COMMIT_AND_CHAIN = 10
    ROLLBACK_AND_CHAIN = 11

class LiteralKind(enum.IntEnum):
    STRING = 0
    INTEGER = 1
    NUMERIC = 2
    BIT_STRING = 3

@final
class Literal:
    @property
    def number(self) -> int: ...
    @property
    def kind(self) -> LiteralKind: ...
    @property
    def raw(self) -> bytes: ...
    @property
    def typed(self) -> bool: ...
    @property
    def value(self) -> bytes: ...
    @property
    def type_oid(self) -> int: ...

@final
class Normalized:
    @property
    def text(self) -> bytes: ...
    @property
    def sql(self) -> bytes: ...
    @property
    def statements(self) -> int: ...
    @property
    def n_params(self) -> int: ...
    @property
    def param_base(self) -> int: ...
    @property
    def kind_mask(self) -> int: ...
    @property
    def has_function_call(self) -> bool: ...
    @property
    def kind_c(self) -> int: ...
    @property
    def tx_verb_c(self) -> int: ...
    @property
    def kind(self) -> StatementKind: ...
    @property
    def tx_verb(self) -> TxVerb: ...
    @property
    def first_word(self) -> str: ...
    @property
    def params(self) -> list[Literal]: ...
    @property
    def values(self) -> list[bytes]: ...
    def render(self, values: Sequence[bytes] | None = None) -> bytes: ...

def normalize(sql: bytes, standard_conforming_strings: bool = True) -> Normalized: ...
