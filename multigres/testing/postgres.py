"""Throwaway Postgres instances for tests: real servers on free loopback ports in temp dirs.

initdb runs once per session into a template that every instance copies (a copy takes
milliseconds, initdb about a second). Every instance is stopped at cleanup, and an atexit
hook catches the runs that end without it (an interrupted session).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from multigres.netutil import free_port
from multigres.pgctld.config import Durability
from multigres.pgctld.instance import InstanceSpec, PgInstance, make_template

# Fast, small servers: tests do not need crash safety of the data, only of the process.
TEST_SETTINGS: dict[str, Any] = {
    "fsync": "off",
    "synchronous_commit": "on",
    "shared_buffers": "16MB",
    "max_connections": "60",
    "wal_keep_size": "64MB",
    "checkpoint_timeout": "30min",
}

PASSWORD = "postgres"


class PgHarness:
    """Creates and owns test instances under one temp dir."""

    def __init__(self, base_dir: Path | None = None) -> None:
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="multigres-pg-"))
        # The postgres OS user (when we are root) must be able to enter it.
        self.base.chmod(0o755)
        self._template: Path | None = None
        self._instances: list[PgInstance] = []
        self._n = 0
        atexit.register(self.cleanup)

    def template(self) -> Path:
        if self._template is None:
            self._template = make_template(self.base / "template", password=PASSWORD)
        return self._template

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n}"

    def _spec(self, name: str, settings: dict[str, Any] | None) -> InstanceSpec:
        return InstanceSpec(
            name=name,
            port=free_port(),
            password=PASSWORD,
            settings={**TEST_SETTINGS, **(settings or {})},
        )

    def primary(
        self, name: str | None = None, settings: dict[str, Any] | None = None
    ) -> PgInstance:
        """A running primary."""
        name = name or self._name("primary")
        inst = PgInstance.create(
            self.base / name, self._spec(name, settings), template=self.template()
        )
        self._instances.append(inst)
        inst.start()
        return inst

    def replica(self, primary: PgInstance, name: str | None = None) -> PgInstance:
        """A running streaming replica of ``primary``."""
        name = name or self._name("replica")
        inst = PgInstance.clone(
            self.base / name,
            self._spec(name, primary.spec.settings),
            primary.endpoint(),
            start=False,
        )
        self._instances.append(inst)
        inst.start()
        return inst

    def shard(
        self, replicas: int = 2, num_sync: int = 0, prefix: str | None = None
    ) -> tuple[PgInstance, list[PgInstance]]:
        """A primary with streaming replicas, and a durability policy if ``num_sync``."""
        prefix = prefix or self._name("shard")
        primary = self.primary(f"{prefix}-p")
        reps = [self.replica(primary, f"{prefix}-r{i + 1}") for i in range(replicas)]
        primary.wait_replicas_streaming([r.spec.name for r in reps], timeout=30)
        if num_sync:
            primary.set_durability(Durability(num_sync, [r.spec.name for r in reps]))
        return primary, reps

    def cleanup(self) -> None:
        for inst in reversed(self._instances):
            try:
                inst.stop(timeout=10)
            except Exception:
                inst.kill()
        self._instances.clear()
        shutil.rmtree(self.base, ignore_errors=True)


def wait_for(predicate: Any, timeout: float = 10, interval: float = 0.05) -> Any:
    """Poll ``predicate()`` until it returns something truthy (for assertions in tests)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)
