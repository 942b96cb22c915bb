"""Finding the Postgres server binaries."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from multigres.pgctld.errors import MissingBinaries

DEFAULT_BIN_DIR = "/usr/lib/postgresql/15/bin"
REQUIRED = ("initdb", "pg_ctl", "postgres", "pg_basebackup", "pg_rewind", "pg_controldata")
INSTALL_HINT = (
    "Install the PostgreSQL 15 server (Debian: `apt-get install postgresql-15`), "
    "or point MULTIGRES_PG_BIN (or --pg-bin) at the directory that holds them."
)


def find_bin_dir(explicit: str | None = None) -> Path:
    """Return the directory holding Postgres's server programs, or raise MissingBinaries.

    Order: the explicit argument, $MULTIGRES_PG_BIN, the Debian PG 15 location, then the
    directory of an ``initdb`` on PATH.
    """
    candidates: list[str] = []
    if explicit:
        candidates.append(explicit)
    elif os.environ.get("MULTIGRES_PG_BIN"):
        candidates.append(os.environ["MULTIGRES_PG_BIN"])
    else:
        candidates.append(DEFAULT_BIN_DIR)
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(str(Path(on_path).resolve().parent))
    for cand in candidates:
        d = Path(cand)
        missing = [b for b in REQUIRED if not os.access(d / b, os.X_OK)]
        if not missing:
            return d
    looked = ", ".join(candidates)
    raise MissingBinaries(
        f"PostgreSQL server binaries not found (looked in {looked} for {', '.join(REQUIRED)}). "
        + INSTALL_HINT
    )


def server_version(bin_dir: Path) -> str:
    """``postgres --version`` output, e.g. ``postgres (PostgreSQL) 15.18``."""
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()
