"""Running Postgres as an unprivileged OS user.

Postgres refuses to run as root. When pgctld runs as root it runs every server program as
the ``postgres`` OS user (override with $MULTIGRES_PG_OS_USER) and makes that user own the
instance directory. As any other user it runs them as itself.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from multigres.pgctld.errors import CommandFailed, PgctldError

DEFAULT_OS_USER = "postgres"


@dataclass(frozen=True)
class RunAs:
    """Who runs the server programs: uid/gid, and the name for messages."""

    name: str
    uid: int
    gid: int
    home: str

    @property
    def switches(self) -> bool:
        """True when commands must drop privileges (we are root, the target is not)."""
        return os.geteuid() == 0 and self.uid != 0

    def chown_tree(self, path: Path) -> None:
        """Give ``path`` and everything under it to this user (only when we switch users)."""
        if not self.switches:
            return
        for root, dirs, files in os.walk(path):
            os.chown(root, self.uid, self.gid, follow_symlinks=False)
            for name in dirs + files:
                os.chown(os.path.join(root, name), self.uid, self.gid, follow_symlinks=False)

    def check_traversable(self, path: Path) -> None:
        """Fail clearly when this user cannot reach ``path`` (a parent dir is mode 0700)."""
        if not self.switches:
            return
        for parent in [*reversed(path.resolve().parents)]:
            st = parent.stat()
            if st.st_uid == self.uid:
                ok = bool(st.st_mode & stat.S_IXUSR)
            elif st.st_gid == self.gid:
                ok = bool(st.st_mode & stat.S_IXGRP)
            else:
                ok = bool(st.st_mode & stat.S_IXOTH)
            if not ok:
                raise PgctldError(
                    f"the OS user {self.name!r} that runs Postgres cannot enter {parent} "
                    f"(mode {stat.filemode(st.st_mode)}); put the data directory elsewhere or "
                    f"run `chmod o+x {parent}`"
                )

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
        what: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a server program as this user; on failure raise CommandFailed with its output."""
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": self.home,
            **(env or {}),
        }
        cmd = list(argv)
        if self.switches:
            # setpriv (util-linux) drops privileges after the exec, not subprocess's
            # user=/group=: those make Python fork() instead of vfork(), and a fork in a
            # process with gRPC threads (the etcd client) runs gRPC's fork handlers, which
            # crashed children here. Without them the child is a plain vfork + exec.
            cmd = [_setpriv(), f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                   "--", *cmd]
        try:
            proc: subprocess.CompletedProcess[str] = subprocess.run(
                cmd,
                env=full_env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                cwd="/",
            )
        except subprocess.TimeoutExpired as e:
            raise CommandFailed(
                f"{what or Path(argv[0]).name} did not finish within {timeout:.0f}s"
            ) from e
        if check and proc.returncode != 0:
            out = (proc.stderr or proc.stdout).strip()
            raise CommandFailed(
                f"{what or Path(argv[0]).name} failed (exit {proc.returncode}): {out}"
            )
        return proc


def _setpriv() -> str:
    path = shutil.which("setpriv") or "/usr/bin/setpriv"
    if not os.access(path, os.X_OK):
        raise PgctldError(
            "running as root needs setpriv (util-linux) to run Postgres as another user; "
            "install it with `apt-get install util-linux`"
        )
    return path


def resolve_run_as(name: str | None = None) -> RunAs:
    """The user to run Postgres as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        pw = pwd.getpwuid(os.geteuid())
        return RunAs(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)
    name = name or os.environ.get("MULTIGRES_PG_OS_USER", DEFAULT_OS_USER)
    try:
        pw = pwd.getpwnam(name)
    except KeyError as e:
        raise PgctldError(
            f"running as root, but there is no OS user {name!r} to run Postgres as; "
            "Postgres refuses to run as root. Create it (`useradd --system postgres`; the "
            "Debian postgresql package does) or set MULTIGRES_PG_OS_USER"
        ) from e
    return RunAs(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir or "/")
