"""The messages of ``multigres.pooler.v1.Pooler``, built from a descriptor at import time.

No protoc step at build time: the schema below is written as a ``FileDescriptorProto`` in
Python, and protobuf's message factory makes the classes. The wire format is ordinary
protobuf, so a client in any language can use this schema, written as a .proto file:

    syntax = "proto3";
    package multigres.pooler.v1;

    message HealthRequest {}
    message HealthResponse {
      string pooler_id = 1;
      string role = 2;                     // "primary" | "replica" | "" (not known yet)
      string serving_state = 3;            // "serving" | "not_serving"
      double replication_lag_seconds = 4;  // 0 on a primary
      int64 replication_lag_bytes = 5;     // received but not yet replayed WAL; 0 on a primary
      bool pg_reachable = 6;
      string error = 7;                    // why Postgres is not reachable, if it is not
      double timestamp = 8;                // when Postgres was polled (Unix seconds)
      bool paused = 9;                     // the admin console's PAUSE is in force
    }
    message StatusRequest {}
    message PoolStatus {
      string user = 1; string database = 2; int32 size = 3;
      int32 cl_active = 4; int32 cl_waiting = 5;
      int32 sv_active = 6; int32 sv_idle = 7; int32 sv_login = 8;
      double maxwait_seconds = 9;
    }
    message StatusResponse {
      string pooler_id = 1; string version = 2; double uptime_seconds = 3;
      int32 workers = 4; int32 pools = 5;
      int32 clients = 6; int32 clients_active = 7; int32 clients_waiting = 8;
      int32 servers = 9; int32 servers_active = 10; int32 servers_idle = 11;
      repeated PoolStatus pool = 12;
      string role = 13; string serving_state = 14; bool paused = 15;
      string listen = 16;
    }
    message UserSecretRequest { string user = 1; }
    message UserSecretResponse {
      bool found = 1;                      // false: no such user (or no password)
      string kind = 2;                     // "scram-sha-256" | "md5" | "plaintext"
      string secret = 3;                   // as pg_authid.rolpassword (or the userlist) has it
    }
    service Pooler {
      rpc Health(HealthRequest) returns (stream HealthResponse);
      rpc Status(StatusRequest) returns (StatusResponse);
      // The stored secret of a user, so that the gateway can authenticate clients against
      // the users of Postgres. A control-plane call: the gRPC port must be reachable only
      // by the cluster's own processes.
      rpc UserSecret(UserSecretRequest) returns (UserSecretResponse);
    }

Fields are only ever added (new numbers), never renumbered, so old clients keep working.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "multigres.pooler.v1"
SERVICE = f"{PACKAGE}.Pooler"
HEALTH_METHOD = f"/{SERVICE}/Health"
STATUS_METHOD = f"/{SERVICE}/Status"
USER_SECRET_METHOD = f"/{SERVICE}/UserSecret"

_F = descriptor_pb2.FieldDescriptorProto
_STRING, _DOUBLE, _INT64, _INT32, _BOOL, _MESSAGE = (
    _F.TYPE_STRING, _F.TYPE_DOUBLE, _F.TYPE_INT64, _F.TYPE_INT32, _F.TYPE_BOOL, _F.TYPE_MESSAGE,
)

_MESSAGES: dict[str, list[tuple[str, int, Any]]] = {
    "HealthRequest": [],
    "HealthResponse": [
        ("pooler_id", 1, _STRING), ("role", 2, _STRING), ("serving_state", 3, _STRING),
        ("replication_lag_seconds", 4, _DOUBLE), ("replication_lag_bytes", 5, _INT64),
        ("pg_reachable", 6, _BOOL), ("error", 7, _STRING), ("timestamp", 8, _DOUBLE),
        ("paused", 9, _BOOL),
    ],
    "StatusRequest": [],
    "PoolStatus": [
        ("user", 1, _STRING), ("database", 2, _STRING), ("size", 3, _INT32),
        ("cl_active", 4, _INT32), ("cl_waiting", 5, _INT32), ("sv_active", 6, _INT32),
        ("sv_idle", 7, _INT32), ("sv_login", 8, _INT32), ("maxwait_seconds", 9, _DOUBLE),
    ],
    "StatusResponse": [
        ("pooler_id", 1, _STRING), ("version", 2, _STRING), ("uptime_seconds", 3, _DOUBLE),
        ("workers", 4, _INT32), ("pools", 5, _INT32), ("clients", 6, _INT32),
        ("clients_active", 7, _INT32), ("clients_waiting", 8, _INT32),
        ("servers", 9, _INT32), ("servers_active", 10, _INT32), ("servers_idle", 11, _INT32),
        ("pool", 12, "PoolStatus"), ("role", 13, _STRING), ("serving_state", 14, _STRING),
        ("paused", 15, _BOOL), ("listen", 16, _STRING),
    ],
    "UserSecretRequest": [("user", 1, _STRING)],
    "UserSecretResponse": [("found", 1, _BOOL), ("kind", 2, _STRING), ("secret", 3, _STRING)],
}


def _build() -> dict[str, Any]:
    fd = descriptor_pb2.FileDescriptorProto(
        name="multigres/pooler/v1/pooler.proto", package=PACKAGE, syntax="proto3"
    )
    for name, fields in _MESSAGES.items():
        msg = fd.message_type.add(name=name)
        for fname, number, ftype in fields:
            f = msg.field.add(name=fname, number=number, json_name=fname)
            if isinstance(ftype, str):
                f.type = _MESSAGE
                f.type_name = f".{PACKAGE}.{ftype}"
                f.label = _F.LABEL_REPEATED
            else:
                f.type = ftype
                f.label = _F.LABEL_OPTIONAL
    svc = fd.service.add(name="Pooler")
    svc.method.add(name="Health", input_type=f".{PACKAGE}.HealthRequest",
                   output_type=f".{PACKAGE}.HealthResponse", server_streaming=True)
    svc.method.add(name="Status", input_type=f".{PACKAGE}.StatusRequest",
                   output_type=f".{PACKAGE}.StatusResponse")
    svc.method.add(name="UserSecret", input_type=f".{PACKAGE}.UserSecretRequest",
                   output_type=f".{PACKAGE}.UserSecretResponse")
    # A pool of our own: nothing else registered in the default pool can clash with it.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
        for name in _MESSAGES
    }


_CLASSES = _build()

# Message classes (typed Any: they are made at run time, so mypy cannot see their fields).
HealthRequest: Any = _CLASSES["HealthRequest"]
HealthResponse: Any = _CLASSES["HealthResponse"]
StatusRequest: Any = _CLASSES["StatusRequest"]
PoolStatus: Any = _CLASSES["PoolStatus"]
StatusResponse: Any = _CLASSES["StatusResponse"]
UserSecretRequest: Any = _CLASSES["UserSecretRequest"]
UserSecretResponse: Any = _CLASSES["UserSecretResponse"]
