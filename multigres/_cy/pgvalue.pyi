"""Type stub for the compiled module multigres._cy.pgvalue (pyx/pgvalue.pyx).

Values are bytes (a column's text as a DataRow carries it), None for SQL NULL.
"""

import enum
from collections.abc import Iterable, Sequence
from typing import ClassVar, TypeAlias, TypeVar, final

class UnsupportedType(Exception):
    sqlstate: ClassVar[str]

class ValueFormatError(ValueError):
    sqlstate: ClassVar[str]

class ValueOutOfRange(ArithmeticError):
    sqlstate: ClassVar[str]

OID_BOOL: int
OID_BYTEA: int
OID_CHAR: int
OID_NAME: int
OID_INT8: int
OID_INT2: int
OID_INT4: int
OID_TEXT: int
OID_OID: int
OID_JSON: int
OID_CIDR: int
OID_FLOAT4: int
OID_FLOAT8: int
OID_MONEY: int
OID_MACADDR: int
OID_INET: int
OID_BPCHAR: int
OID_VARCHAR: int
OID_DATE: int
OID_TIME: int
OID_TIMESTAMP: int
OID_TIMESTAMPTZ: int
OID_INTERVAL: int
OID_TIMETZ: int
OID_NUMERIC: int
OID_UUID: int
OID_JSONB: int

def type_name(oid: int) -> str: ...
def supported_sort_type(oid: int) -> bool: ...
def datarow_columns(payload: bytes) -> list[tuple[int, int]]: ...
def build_datarow(values: Iterable[bytes | None]) -> bytes: ...
def compare(
    type_oid: int,
    a: bytes | None,
    b: bytes | None,
    desc: bool = False,
    nulls_first: bool | None = None,
) -> int: ...
def value_group_key(type_oid: int, value: bytes | None) -> bytes: ...
def float_text(value: float, float4: bool = False) -> bytes: ...
@final
class RowView:
    def __init__(self, data: bytes, start: int = 0, end: int = -1) -> None: ...
    @property
    def data(self) -> bytes: ...
    @property
    def ncols(self) -> int: ...
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> bytes | None: ...
    def values(self) -> list[bytes | None]: ...
    def spans(self) -> list[tuple[int, int]]: ...
    def payload(self) -> bytes: ...

@final
class SortKey:
    def __init__(
        self, column: int, type_oid: int, desc: bool = False, nulls_first: bool | None = None
    ) -> None: ...
    @property
    def column(self) -> int: ...
    @property
    def type_oid(self) -> int: ...
    @property
    def desc(self) -> bool: ...
    @property
    def nulls_first(self) -> bool: ...

@final
class SortSpec:
    def __init__(self, keys: Iterable[SortKey]) -> None: ...
    @property
    def keys(self) -> tuple[SortKey, ...]: ...
    @property
    def min_columns(self) -> int: ...
    def compare(self, a: RowView, b: RowView) -> int: ...
    def group_key(self, row: RowView) -> bytes: ...

def kway_merge(spec: SortSpec, runs: Iterable[Iterable[RowView]]) -> list[RowView]: ...
def merge_payloads(
    spec: SortSpec, runs: Iterable[Iterable[bytes]], offset: int = 0, limit: int = -1
) -> list[bytes]: ...

class AggKind(enum.IntEnum):
    COUNT = 0
    SUM = 1
    MIN = 2
    MAX = 3
    AVG = 4
    BOOL_AND = 5
    BOOL_OR = 6
    STRING_AGG = 7
    ARRAY_AGG = 8

_Row = TypeVar("_Row", RowView, bytes)

# A partial: a text (None for NULL), or for avg a (sum, count) pair (multigres.sql.pgtypes.Partial).
_Partial: TypeAlias = bytes | tuple[bytes | None, bytes | None] | None

def supported_aggregate(kind: int, input_oid: int = 0) -> bool: ...
@final
class AggSpec:
    def __init__(self, kind: int, input_oid: int = 0, delimiter: bytes | None = None) -> None: ...
    @property
    def kind(self) -> int: ...
    @property
    def input_oid(self) -> int: ...
    @property
    def result_oid(self) -> int: ...
    @property
    def partial_oids(self) -> tuple[int, ...]: ...
    @property
    def delimiter(self) -> bytes | None: ...
    @property
    def columns(self) -> int: ...
    def state(self) -> AggState: ...
    def combine(self, a: _Partial, b: _Partial) -> _Partial: ...
    def final(self, partial: _Partial) -> bytes | None: ...

class AggState:
    @property
    def spec(self) -> AggSpec: ...
    def combine(self, partial: _Partial) -> None: ...
    def combine_row(self, row: RowView, column: int) -> None: ...
    def final(self) -> bytes | None: ...
    def partial(self) -> _Partial: ...

def sort_rows(spec: SortSpec, rows: Iterable[_Row]) -> list[_Row]: ...
def fold_groups(
    rows: Iterable[RowView | bytes],
    group_by: SortSpec,
    aggs: Sequence[AggSpec],
    agg_columns: Sequence[int],
) -> dict[bytes, tuple[RowView, list[AggState]]]: ...
