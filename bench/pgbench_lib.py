"""Measuring for bench/pgbench_compare: workloads, pgbench runs, /proc accounting, the report.

CPU is read from /proc/<pid>/stat: utime + stime (all threads) + cutime + cstime (children
already reaped) of a process and of every live descendant. A process that exits during a run
is reaped by its parent and its time moves into the parent's cutime/cstime, so the sum over a
tree is continuous, and the difference of two snapshots is the CPU the tree used in between:
forked workers and Postgres backends that came and went (pgbench -C) included.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import shlex
import signal
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- workloads ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A pgbench workload: its flags and what it stands for."""

    name: str  # as given to --workloads
    flags: tuple[str, ...]
    description: str
    connect: bool = False  # a new connection per transaction (-C)

    @property
    def label(self) -> str:
        return " ".join(self.flags)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("S", ("-S",), "select only, simple protocol"),
        Workload("S-prepared", ("-S", "-M", "prepared"), "select only, named prepared statements"),
        Workload("N", ("-N",), "simple update: 3 writes + 1 select per transaction"),
        Workload("S-C", ("-S", "-C"), "select only, a new connection per transaction", True),
    )
}


# -- pgbench ------------------------------------------------------------------------------


class PgbenchError(Exception):
    """pgbench printed no result to parse."""


@dataclass
class PgbenchOutput:
    transactions: int
    tps: float
    failed: int = 0
    latency_ms: float | None = None
    connection_ms: float | None = None  # -C: per connection; else: all initial connections
    aborted: bool = False
    errors: list[str] = field(default_factory=list)


_TPS_CONNECT = (
    re.compile(r"^tps = ([\d.]+) \(including reconnection times\)", re.M),  # pgbench 14+
    re.compile(r"^tps = ([\d.]+) \(including connections establishing\)", re.M),  # <= 13
)
_TPS_STEADY = (
    re.compile(r"^tps = ([\d.]+) \(without initial connection time\)", re.M),  # pgbench 14+
    re.compile(r"^tps = ([\d.]+) \(excluding connections establishing\)", re.M),  # <= 13
)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
_LATENCY = re.compile(r"^latency average = ([\d.]+) ms", re.M)
_CONNECTING = re.compile(r"^(?:initial|average) connection time = ([\d.]+) ms", re.M)


def parse_pgbench(stdout: str, stderr: str, *, connect: bool) -> PgbenchOutput:
    """The numbers of a pgbench run. For -C the TPS includes connecting (that is the point);
    otherwise it excludes the initial connections."""
    processed = _PROCESSED.search(stdout)
    tps = None
    for rx in _TPS_CONNECT if connect else _TPS_STEADY:
        m = rx.search(stdout)
        if m:
            tps = float(m.group(1))
            break
    errors = pgbench_errors(stderr)
    if processed is not None and int(processed.group(1)) == 0 and not errors:
        raise PgbenchError(
            "no transaction completed: pgbench's -T window includes connecting the clients; "
            "raise --duration"
        )
    if processed is None or tps is None:
        raise PgbenchError("; ".join(errors) or "pgbench printed no tps line")
    failed = _FAILED.search(stdout)
    latency = _LATENCY.search(stdout)
    connecting = _CONNECTING.search(stdout)
    return PgbenchOutput(
        transactions=int(processed.group(1)),
        tps=tps,
        failed=int(failed.group(1)) if failed else 0,
        latency_ms=float(latency.group(1)) if latency else None,
        connection_ms=float(connecting.group(1)) if connecting else None,
        aborted="Run was aborted" in stderr,
        errors=errors,
    )


def pgbench_errors(stderr: str, limit: int = 3) -> list[str]:
    """The distinct server or pgbench error messages in pgbench's stderr.

    Threads of pgbench write concurrently, so one line may hold pieces of several messages:
    split at every "pgbench:" and keep the server's own words ("ERROR:  ...") when present."""
    seen: list[str] = []
    for piece in re.split(r"pgbench:|\n", stderr):
        piece = piece.strip()
        if not piece or "Run was aborted" in piece:
            continue
        m = re.search(r"\b(ERROR|FATAL):\s+(.*)", piece) or re.search(
            r"\b(error|fatal):\s+(.*)", piece
        )
        if m is None:
            continue
        msg = f"{m.group(1).upper()}: {m.group(2).strip()}"
        if msg not in seen:
            seen.append(msg)
        if len(seen) >= limit:
            break
    return seen


@dataclass
class PgbenchRun:
    stdout: str
    stderr: str
    returncode: int
    seconds: float
    cpu_seconds: float  # pgbench's own CPU (user + system)


def run_pgbench(argv: Sequence[str], env: dict[str, str], timeout: float) -> PgbenchRun:
    """Run pgbench to completion. It runs in its own session so that a Ctrl-C reaches only
    us; on any exception (Ctrl-C included) its process group is killed before re-raising."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    seconds = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return PgbenchRun(stdout, stderr, proc.returncode, seconds, cpu)


# -- /proc ---------------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, CPU clock ticks: utime + stime + cutime + cstime) for every process."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue  # exited while we looked
        # The command name (field 2) may hold spaces and ')': split after the last ')'.
        fields = raw[raw.rfind(b")") + 2 :].split()
        ppid = int(fields[1])
        ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        table[int(entry.name)] = (ppid, ticks)
    return table


def _tree(root: int, table: dict[int, tuple[int, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def trees_cpu_seconds(*roots: int | None) -> list[float | None]:
    """CPU seconds used so far by each root and its descendants (None if it is gone); one
    scan of /proc for all of them, so the snapshots are taken at the same moment."""
    table = _proc_table()
    out: list[float | None] = []
    for root in roots:
        if root is None or root not in table:
            out.append(None)
        else:
            out.append(sum(table[pid][1] for pid in _tree(root, table)) / CLK_TCK)
    return out


def tree_rss_bytes(root: int | None) -> int | None:
    """VmRSS summed over ``root`` and its descendants (pages shared after fork count twice)."""
    if root is None:
        return None
    table = _proc_table()
    if root not in table:
        return None
    total = 0
    for pid in _tree(root, table):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE for us and the children we start; returns the new soft limit.

    The soft limit goes to the hard limit; as root the hard limit also goes up to ``wanted``
    (bounded by fs.nr_open). Each client connection is one fd in pgbench and one in the proxy
    (the --idle-clients mode holds its N client sockets in this process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted and os.geteuid() == 0:
        try:
            nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            nr_open = wanted
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, nr_open),) * 2)
            return min(wanted, nr_open)
        except (ValueError, OSError):
            pass
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# -- results -------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One pgbench run against one target."""

    workload: str
    label: str
    clients: int
    target: str
    duration: float
    tps: float | None = None
    transactions: int | None = None
    failed: int | None = None
    latency_ms: float | None = None
    connection_ms: float | None = None
    proxy_cpu_s: float | None = None
    pg_cpu_s: float | None = None
    pgbench_cpu_s: float | None = None
    wall_s: float | None = None
    error: str | None = None
    output: str = ""  # pgbench's stdout and stderr (the end of them), for the JSON
    # A summary of repeated runs (summarize()): how many, and the median CPU per transaction.
    repeats: int = 1
    median_proxy_us: float | None = None
    median_pg_us: float | None = None

    def per_tx_us(self, cpu_s: float | None) -> float | None:
        if cpu_s is None or not self.transactions:
            return None
        return cpu_s * 1e6 / self.transactions

    @property
    def proxy_us_per_tx(self) -> float | None:
        if self.repeats > 1:
            return self.median_proxy_us
        return self.per_tx_us(self.proxy_cpu_s)

    @property
    def pg_us_per_tx(self) -> float | None:
        if self.repeats > 1:
            return self.median_pg_us
        return self.per_tx_us(self.pg_cpu_s)


def summarize(runs: list[RunResult]) -> RunResult:
    """One row for repeated runs of one target: the median TPS and the median CPU per
    transaction (each metric on its own). A failed run fails the row: a target that errs once
    in three runs is not fine."""
    first = runs[0]
    if len(runs) == 1:
        return first
    failed = [r for r in runs if r.error is not None or r.tps is None]
    if failed:
        return failed[0]

    def median(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    return RunResult(
        workload=first.workload,
        label=first.label,
        clients=first.clients,
        target=first.target,
        duration=first.duration,
        tps=median([r.tps for r in runs]),
        transactions=sum(r.transactions or 0 for r in runs),
        repeats=len(runs),
        median_proxy_us=median([r.proxy_us_per_tx for r in runs]),
        median_pg_us=median([r.pg_us_per_tx for r in runs]),
    )


def summarize_all(runs: list[RunResult]) -> list[RunResult]:
    """``runs`` (in run order, each target possibly several times) -> one row per workload,
    client count and target, in order of first appearance."""
    groups: dict[tuple[str, int, str], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.workload, r.clients, r.target), []).append(r)
    return [summarize(g) for g in groups.values()]


@dataclass
class IdleResult:
    """RSS of a proxy before and while it holds N idle client connections."""

    target: str
    requested: int
    opened: int = 0
    rss_before: int | None = None
    rss_after: int | None = None
    connect_s: float | None = None
    error: str | None = None

    @property
    def delta(self) -> int | None:
        if self.rss_before is None or self.rss_after is None:
            return None
        return self.rss_after - self.rss_before


# -- goals (issue 3, "Performance") -----------------------------------------------------------

TPS_VS_PGBOUNCER = 0.9  # every row
CPU_VS_PGBOUNCER = 1.2  # -S at 16 clients
IDLE_MB_PER_10K = 100  # RSS cost of 10,000 idle clients
GW_CPU_VS_PGBOUNCER = 2.2  # gateway + pooler, -S at 16 clients (issue 4)
GW_LOCAL_CPU_VS_PGBOUNCER = 1.4  # the same in local mode (one process)
GW_IDLE_MB_PER_10K = 150


def goal_misses(mp: RunResult, pgb: RunResult | None, direct: RunResult | None) -> list[str]:
    """The issues' targets that a multipooler or multigateway row misses (empty: all met or
    not measurable)."""
    misses = []
    if mp.tps is None:
        return ["no result"]
    if mp.target.startswith("multigateway"):
        limit = GW_LOCAL_CPU_VS_PGBOUNCER if mp.target.endswith("local") else GW_CPU_VS_PGBOUNCER
        if mp.workload == "S" and mp.clients == 16 and pgb is not None:
            mine, theirs = mp.proxy_us_per_tx, pgb.proxy_us_per_tx
            if mine is not None and theirs and mine > limit * theirs:
                misses.append(f"CPU > {limit}x pgb")
        return misses
    if pgb is not None and pgb.tps and mp.tps < TPS_VS_PGBOUNCER * pgb.tps:
        misses.append(f"TPS < {TPS_VS_PGBOUNCER}x pgb")
    if mp.workload == "S" and mp.clients == 16 and pgb is not None:
        mine, theirs = mp.proxy_us_per_tx, pgb.proxy_us_per_tx
        if mine is not None and theirs and mine > CPU_VS_PGBOUNCER * theirs:
            misses.append(f"CPU > {CPU_VS_PGBOUNCER}x pgb")
    if mp.clients >= 500 and direct is not None and direct.tps and mp.tps < direct.tps:
        misses.append("TPS < direct")
    return misses


# -- the report ----------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return ""
    return f"{a / b:.2f}"


RUN_HEADERS = [
    "workload",
    "clients",
    "target",
    "TPS",
    "vs direct",
    "proxy CPU us/tx",
    "PG CPU us/tx",
    "x/pgb TPS",
    "x/pgb CPU",
    "goals",
]
RUN_ALIGN = "<r<rrrrrr<"
OURS = ("multipooler", "multigateway", "multigateway-local")


def run_rows(results: list[RunResult]) -> tuple[list[list[str]], list[str]]:
    """Table rows (grouped by workload and clients, in run order) and footnotes for errors.

    A run with an error (pgbench aborts a client at its first error) shows "failed" and no
    numbers: a partial run's TPS and CPU per transaction mean nothing. JSON keeps them."""
    rows: list[list[str]] = []
    notes: list[str] = []
    groups: dict[tuple[str, int], dict[str, RunResult]] = {}
    for r in results:
        groups.setdefault((r.workload, r.clients), {})[r.target] = r
    for group in groups.values():
        direct, pgb = _good(group.get("direct")), _good(group.get("pgbouncer"))
        for r in group.values():
            row = [r.label, str(r.clients), r.target] + [""] * (len(RUN_HEADERS) - 3)
            if _good(r) is None:
                notes.append(f"{r.label} / {r.clients} clients / {r.target}: {r.error}")
                row[3] = f"failed [{len(notes)}]"
                if r.target in OURS:
                    row[9] = "MISS: failed"
                rows.append(row)
                continue
            row[3] = _num(r.tps)
            if direct is not None and r is not direct:
                row[4] = _ratio(r.tps, direct.tps)
            row[5] = "n/a" if r.target == "direct" else _num(r.proxy_us_per_tx, 1)
            row[6] = _num(r.pg_us_per_tx, 1)
            if r.target in OURS:
                if pgb is not None:
                    row[7] = _ratio(r.tps, pgb.tps)
                    row[8] = _ratio(r.proxy_us_per_tx, pgb.proxy_us_per_tx)
                misses = goal_misses(r, pgb, direct)
                row[9] = "ok" if not misses else "MISS: " + ", ".join(misses)
            rows.append(row)
    return rows, notes


def _good(r: RunResult | None) -> RunResult | None:
    """``r`` if it ran cleanly and has numbers, else None."""
    return r if r is not None and r.tps is not None and r.error is None else None


IDLE_HEADERS = [
    "target",
    "idle clients",
    "opened",
    "RSS before MB",
    "RSS after MB",
    "delta MB",
    "KB/client",
    "connect s",
    "goal",
]
IDLE_ALIGN = "<rrrrrrr<"


def idle_rows(results: list[IdleResult]) -> tuple[list[list[str]], list[str]]:
    rows: list[list[str]] = []
    notes: list[str] = []
    mb = 1024 * 1024
    for r in results:
        delta = r.delta
        per = delta / r.opened / 1024 if delta is not None and r.opened else None
        goal = ""
        limit = GW_IDLE_MB_PER_10K if r.target.startswith("multigateway") else IDLE_MB_PER_10K
        if r.target in OURS and r.opened < r.requested:
            goal = f"MISS: {r.opened} of {r.requested} opened"
        elif r.target in OURS and delta is not None and r.opened:
            allowed = limit * mb * r.opened / 10_000
            goal = "ok" if delta <= allowed else f"MISS: > {limit} MB per 10k"
        opened = str(r.opened)
        if r.error:
            notes.append(f"idle / {r.target}: {r.error}")
            opened += f" [{len(notes)}]"
        rows.append(
            [
                r.target,
                str(r.requested),
                opened,
                _num(r.rss_before / mb if r.rss_before is not None else None, 1),
                _num(r.rss_after / mb if r.rss_after is not None else None, 1),
                _num(delta / mb if delta is not None else None, 1),
                _num(per, 1),
                _num(r.connect_s, 1),
                goal,
            ]
        )
    return rows, notes


def format_table(
    headers: list[str], rows: list[list[str]], align: str, *, markdown: bool = False
) -> str:
    if markdown:
        sep = ["---:" if a == "r" else "---" for a in align]
        lines = [headers, sep, *rows]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        out = [
            c.rjust(w) if a == "r" else c.ljust(w)
            for c, w, a in zip(cells, widths, align, strict=True)
        ]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def format_notes(notes: list[str], *, markdown: bool = False) -> str:
    prefix = "" if not markdown else "\n"
    return prefix + "\n".join(
        f"[{i}] {n}" + ("  " if markdown else "") for i, n in enumerate(notes, 1)
    )


# -- the machine -------------------------------------------------------------------------


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    return (
        (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "n/a"
    )


def machine_info(*, pg_bin: Path, pgbouncer: str, repo_root: Path) -> dict[str, str]:
    """What the numbers were measured on, printed above them."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    commit = _first_line(["git", "-C", str(repo_root), "rev-parse", "--short", "HEAD"])
    try:
        status = subprocess.run(
            ["git", "-C", str(repo_root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if status.returncode == 0 and status.stdout.strip():
            commit += " + local changes"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "cpu": model,
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgres": _first_line([str(pg_bin / "postgres"), "--version"]),
        "pgbench": _first_line([str(pg_bin / "pgbench"), "--version"]),
        "pgbouncer": _first_line([pgbouncer, "--version"])
        if os.access(pgbouncer, os.X_OK)
        else "not installed",
        "multigres": commit,
    }


def command_line(argv: Sequence[str]) -> str:
    return shlex.join(["bench/pgbench_compare", *argv])
