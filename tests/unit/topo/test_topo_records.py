"""Records: JSON round trips, forward/backward compatibility, validation; paths and names."""

from __future__ import annotations

import json
import os
import time

import pytest

from multigres.topo.lock import LockHolder
from multigres.topo.records import (
    Cell,
    Database,
    DurabilityPolicy,
    Pooler,
    PoolerRole,
    RecordError,
    ServingState,
    Shard,
    TableGroup,
    VSchema,
    Workflow,
)
from multigres.topo.server import (
    cell_path,
    pooler_path,
    poolers_dir,
    shard_dir,
    shard_path,
    vschema_path,
    workflow_path,
)


def test_round_trips() -> None:
    records = [
        Cell("zone1", region="eu-west"),
        Database("app", DurabilityPolicy("cross_cell", 2), ["zone1", "zone2"]),
        TableGroup("app", "users", sharded=True),
        Shard("app", "users", "-80", "zone1", "zone1-100", 7, is_primary_serving=False),
        Pooler(
            "zone1-100", "zone1", "h", 6432, "pgh", 5432, "app", "users", "-80",
            PoolerRole.PRIMARY, ServingState.SERVING, grpc_port=7000, pgctld_data_dir="/d",
        ),
    ]  # fmt: skip
    for record in records:
        again = type(record).from_json(record.to_json(), 42)
        assert again == record
        assert again.version == 42
        assert "version" not in json.loads(record.to_json())


def test_stored_json_is_readable() -> None:
    p = Pooler("zone1-1", "zone1", "h", 1, "pgh", 2, "app", "main", "0")
    stored = json.loads(p.to_json())
    assert stored["role"] == "replica" and stored["serving_state"] == "not_serving"
    db = json.loads(Database("app").to_json())
    assert db["durability_policy"] == {"kind": "any", "num_sync": 1}


def test_unknown_fields_ignored_missing_optional_defaulted() -> None:
    # Written by a newer binary (extra field) or an older one (fields missing).
    data = json.dumps({"name": "app", "added_later": 1, "cells": ["z"]}).encode()
    db = Database.from_json(data)
    assert db == Database("app", DurabilityPolicy(), ["z"])
    p = Pooler.from_json(
        json.dumps(
            {"id": "a", "cell": "z", "host": "h", "port": 1, "pg_host": "p", "pg_port": 2,
             "database": "d", "tablegroup": "t", "shard": "0", "role": "primary"}
        ).encode()
    )  # fmt: skip
    assert p.role is PoolerRole.PRIMARY and p.serving_state is ServingState.NOT_SERVING


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"[1, 2]", b'{"region": "eu"}', b'{"name": 5}'],
)
def test_bad_records(data: bytes) -> None:
    with pytest.raises(RecordError):
        Cell.from_json(data)


def test_bad_enum_value() -> None:
    p = json.loads(Pooler("a", "z", "h", 1, "p", 2, "d", "t", "0").to_json())
    p["role"] = "leader"
    with pytest.raises(RecordError, match="leader"):
        Pooler.from_json(json.dumps(p).encode())


def test_durability_policy_validation() -> None:
    with pytest.raises(RecordError, match="kind"):
        DurabilityPolicy("majority", 1)
    with pytest.raises(RecordError, match="num_sync"):
        DurabilityPolicy("any", -1)
    with pytest.raises(RecordError):
        Database.from_json(b'{"name": "a", "durability_policy": {"kind": "x"}}')


def test_opaque_documents() -> None:
    doc: dict[str, object] = {"tablegroups": {"main": {"tables": {"t": {}}}}}
    vs = VSchema("app", doc, version=3)
    assert json.loads(vs.to_json()) == doc
    assert VSchema.load("app", vs.to_json(), 3) == vs
    wf = Workflow("app", "move1", {"state": "copy"})
    assert Workflow.load("app", "move1", wf.to_json()) == wf
    with pytest.raises(RecordError):
        VSchema.load("app", b"[]")


def test_shard_key_range() -> None:
    assert str(Shard("a", "t", "-80").key_range) == "-80"
    assert Shard("a", "t", "0").key_range.is_full


def test_paths() -> None:
    assert cell_path("zone1") == "/global/cells/zone1/Cell"
    assert shard_path("app", "users", "-80") == (
        "/global/databases/app/tablegroups/users/shards/-80/Shard"
    )
    assert shard_dir("app", "users", "-80") == "/global/databases/app/tablegroups/users/shards/-80"
    assert vschema_path("app") == "/global/databases/app/VSchema"
    assert workflow_path("app", "m") == "/global/databases/app/workflows/m/Workflow"
    assert poolers_dir("zone1") == "/zone1/poolers"
    assert pooler_path("zone1", "zone1-100") == "/zone1/poolers/zone1-100/Pooler"


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a b", "tab\t", "nl\n"])
def test_bad_names(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        pooler_path("zone1", bad)


def test_lock_holder() -> None:
    holder = LockHolder.here("reparent app/main/-80")
    assert holder.pid == os.getpid()
    assert LockHolder.from_json(holder.to_json()) == holder
    assert LockHolder.from_json(b"garbage") is None
    text = str(LockHolder("db1", 42, "reshard", time.time() - 5))
    assert "pid 42 on host db1" in text and "'reshard'" in text and "5." in text
