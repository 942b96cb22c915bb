"""The configuration pgctld gives every instance.

``postgresql.conf`` (from initdb) ends with ``include 'multigres.conf'``. pgctld owns
``multigres.conf`` and rewrites it from the instance spec on every change (port, replication
source, durability policy), then reloads or restarts. Everything in it is derived from the
spec, so it is never edited by hand; ``ALTER SYSTEM`` (postgresql.auto.conf) still overrides it.
Because pg_basebackup and pg_rewind copy configuration files from the source server, pgctld
rewrites ``multigres.conf`` after each of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

INCLUDE_LINE = "include_if_exists = 'multigres.conf'"

# Settings every instance gets. WHY each:
BASE_SETTINGS: dict[str, str] = {
    # logical: later resharding streams changes with logical replication slots.
    "wal_level": "logical",
    "max_wal_senders": "20",
    "max_replication_slots": "20",
    # pg_rewind needs either data checksums or WAL hint bits.
    "wal_log_hints": "on",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    # Replicas get back in sync after short outages without a new base backup.
    "wal_keep_size": "256MB",
    # Cross-shard atomic commit uses PREPARE TRANSACTION.
    "max_prepared_transactions": "100",
    "password_encryption": "scram-sha-256",
    "synchronous_commit": "on",
    # Only TCP: no dependency on /var/run/postgresql, and no socket path length limits.
    "unix_socket_directories": "''",
    "logging_collector": "off",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
    "log_min_duration_statement": "-1",
    "log_checkpoints": "on",
    "log_connections": "off",
    "log_replication_commands": "on",
}

HBA = """\
# Written by pgctld. Loopback only unless listen_addresses says otherwise.
# TYPE  DATABASE     USER  ADDRESS        METHOD
host    all          all   127.0.0.1/32   scram-sha-256
host    all          all   ::1/128        scram-sha-256
host    replication  all   127.0.0.1/32   scram-sha-256
host    replication  all   ::1/128        scram-sha-256
"""


def hba(settings: Mapping[str, object]) -> str:
    """pg_hba.conf for an instance: ``HBA``, plus password logins on the Unix socket when the
    settings give it a directory (a pooler beside its Postgres connects there)."""
    sockets = str(settings.get("unix_socket_directories", "''")).strip("'\" ")
    if not sockets:
        return HBA
    return HBA + "local   all          all                  scram-sha-256\n"


def quote_value(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def conf_value(value: object) -> str:
    """A setting's value as postgresql.conf text: plain words and numbers stay bare."""
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value)
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        return text
    if text and all(c.isalnum() or c in "._-" for c in text):
        return text
    return quote_value(text)


def quote_standby_name(name: str) -> str:
    """A name inside synchronous_standby_names: double-quoted unless a plain identifier."""
    if name.replace("_", "a").isalnum() and name.islower() and not name[0].isdigit():
        return name
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Durability:
    """A durability policy: ``num_sync`` of ``standbys`` must have each commit's WAL.

    Becomes ``synchronous_standby_names = 'ANY num_sync (standbys...)'`` with
    ``synchronous_commit = on``. ``num_sync == 0`` means asynchronous replication.
    """

    num_sync: int = 0
    standbys: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.num_sync < 0:
            raise ValueError("num_sync must be >= 0")
        if self.num_sync > len(self.standbys):
            raise ValueError(
                f"durability policy needs {self.num_sync} synchronous standby(s) but names "
                f"only {len(self.standbys)}: {self.standbys}"
            )

    def standby_names(self) -> str:
        if self.num_sync == 0:
            return ""
        names = ", ".join(quote_standby_name(n) for n in self.standbys)
        return f"ANY {self.num_sync} ({names})"


@dataclass
class Upstream:
    """Where a replica streams from."""

    host: str
    port: int
    slot: str


def render_multigres_conf(
    *,
    name: str,
    listen: str,
    port: int,
    upstream: Upstream | None,
    durability: Durability | None,
    conninfo_auth: str,
    settings: Mapping[str, object],
) -> str:
    """The whole text of multigres.conf for an instance spec."""
    values: dict[str, str] = dict(BASE_SETTINGS)
    values.update(
        {
            "listen_addresses": quote_value(listen),
            "port": str(port),
            "cluster_name": quote_value(name),
        }
    )
    if upstream is not None:
        conninfo = (
            f"host={upstream.host} port={upstream.port} {conninfo_auth} "
            f"application_name={name} connect_timeout=5"
        )
        values["primary_conninfo"] = quote_value(conninfo)
        values["primary_slot_name"] = quote_value(upstream.slot)
        values["recovery_target_timeline"] = "'latest'"
    if durability is not None and durability.num_sync > 0:
        values["synchronous_standby_names"] = quote_value(durability.standby_names())
        values["synchronous_commit"] = "on"
    else:
        values["synchronous_standby_names"] = "''"
    for k, v in settings.items():
        values[k] = conf_value(v)
    lines = ["# Written by pgctld from the instance spec; changes here are overwritten."]
    lines += [f"{k} = {v}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def slot_name(instance_name: str) -> str:
    """A replication slot name for an instance (slots allow only [a-z0-9_])."""
    out = "".join(c if c.isalnum() else "_" for c in instance_name.lower())
    return out[:63]
