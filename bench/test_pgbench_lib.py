"""bench/pgbench_compare's measuring code, without servers: pgbench output, /proc, the report."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pgbench_lib import (
    IdleResult,
    RunResult,
    format_table,
    idle_rows,
    parse_pgbench,
    pgbench_errors,
    run_rows,
    summarize_all,
    tree_rss_bytes,
    trees_cpu_seconds,
)

STEADY = """\
pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 16
number of threads: 2
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 266447
number of failed transactions: 0 (0.000%)
latency average = 0.297 ms
initial connection time = 18.308 ms
tps = 53812.109305 (without initial connection time)
"""

CONNECT = """\
number of transactions actually processed: 371
number of failed transactions: 0 (0.000%)
latency average = 21.612 ms
average connection time = 10.482 ms
tps = 185.083654 (including reconnection times)
"""

ABORTED_STDERR = (
    "pgbench: error: client 3 script 0 aborted in command 1 query 0: ERROR:  prepared "
    'statement "P_0" does not exist\n'
    "pgbench:pgbench: error: client 1 script 0 aborted in command 1 query 0: ERROR:  prepared "
    'statement "P_0" already exists\n'
    "pgbench: error: Run was aborted; the above results are incomplete.\n"
)


def test_parse_steady_run() -> None:
    out = parse_pgbench(STEADY, "", connect=False)
    assert out.transactions == 266447
    assert out.tps == 53812.109305
    assert out.latency_ms == 0.297
    assert out.connection_ms == 18.308
    assert not out.aborted and out.failed == 0


def test_parse_connect_run_uses_the_tps_with_connections() -> None:
    out = parse_pgbench(CONNECT, "", connect=True)
    assert out.tps == 185.083654
    assert out.connection_ms == 10.482


def test_aborted_run_keeps_the_server_messages() -> None:
    out = parse_pgbench(STEADY, ABORTED_STDERR, connect=False)
    assert out.aborted
    assert pgbench_errors(ABORTED_STDERR) == [
        'ERROR: prepared statement "P_0" does not exist',
        'ERROR: prepared statement "P_0" already exists',
    ]


def test_no_transaction_says_to_raise_the_duration() -> None:
    text = "number of transactions actually processed: 0\nnumber of failed transactions: 0\n"
    try:
        parse_pgbench(text, "", connect=False)
    except Exception as e:
        assert "--duration" in str(e)
    else:
        raise AssertionError("expected an error")


def test_tree_cpu_counts_children_and_reaped_children() -> None:
    # A child that burns CPU and exits: its time must show up in our tree via cutime.
    before = trees_cpu_seconds(os.getpid())[0]
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass",
        ],
        check=True,
    )
    time.sleep(0.05)
    after = trees_cpu_seconds(os.getpid())[0]
    assert before is not None and after is not None
    assert after - before >= 0.25
    assert trees_cpu_seconds(None, 2**22 + 12345) == [None, None]
    rss = tree_rss_bytes(os.getpid())
    assert rss is not None and rss > 1_000_000


def _run(target: str, tps: float, cpu_s: float | None, error: str | None = None) -> RunResult:
    return RunResult(
        workload="S",
        label="-S",
        clients=16,
        target=target,
        duration=5,
        tps=tps,
        transactions=int(tps * 5),
        proxy_cpu_s=cpu_s,
        pg_cpu_s=1.0,
        error=error,
    )


def test_report_ratios_goals_and_failed_rows() -> None:
    runs = [
        _run("direct", 50_000, None),
        _run("pgbouncer", 30_000, 1.5),
        _run("multipooler", 33_000, 2.2),  # 1.10x TPS, 1.33x CPU per transaction
    ]
    rows, notes = run_rows(runs)
    mp = rows[2]
    assert mp[3] == "33,000" and mp[4] == "0.66"
    assert mp[7] == "1.10" and mp[8] == "1.33"
    assert mp[9] == "MISS: CPU > 1.2x pgb"
    assert notes == []

    runs[1] = _run("pgbouncer", 1_000, 0.1, error="pgbench aborted: ERROR: boom")
    rows, notes = run_rows(runs)
    assert rows[1][3] == "failed [1]" and rows[1][5] == ""
    assert rows[2][7] == "" and rows[2][9] == "ok"
    assert notes == ["-S / 16 clients / pgbouncer: pgbench aborted: ERROR: boom"]
    text = format_table(["a", "b"], [["x", "1"]], "<r")
    assert text.splitlines()[2] == "x  1"
    md = format_table(["a", "b"], [["x", "1"]], "<r", markdown=True)
    assert md.splitlines()[1] == "| --- | ---: |"


def test_idle_goal_is_per_10k_clients() -> None:
    mb = 1024 * 1024
    ok = IdleResult("multipooler", 10_000, 10_000, rss_before=40 * mb, rss_after=120 * mb)
    bad = IdleResult("multipooler", 1_000, 1_000, rss_before=40 * mb, rss_after=60 * mb)
    short = IdleResult("multipooler", 100, 20, rss_before=mb, rss_after=mb, error="timeout")
    rows, notes = idle_rows([ok, bad, short])
    assert notes == ["idle / multipooler: timeout"]
    assert rows[0][-1] == "ok"
    assert rows[1][-1].startswith("MISS")
    assert rows[2][-1] == "MISS: 20 of 100 opened" and rows[2][2] == "20 [1]"


def _repeat_run(target: str, tps: float, proxy_cpu_s: float, tx: int, error: str | None = None
         ) -> RunResult:
    return RunResult(workload="S", label="-S", clients=16, target=target, duration=5.0,
                     tps=tps, transactions=tx, proxy_cpu_s=proxy_cpu_s, pg_cpu_s=1.0,
                     error=error)


def test_repeated_runs_are_summarized_by_their_medians() -> None:
    runs = [
        _repeat_run("pgbouncer", 100.0, 1.0, 100_000),  # 10 us/tx
        _repeat_run("multipooler", 90.0, 1.3, 100_000),  # 13 us/tx
        _repeat_run("pgbouncer", 120.0, 1.1, 100_000),  # 11
        _repeat_run("multipooler", 95.0, 1.1, 100_000),  # 11
        _repeat_run("pgbouncer", 110.0, 1.2, 100_000),  # 12
        _repeat_run("multipooler", 200.0, 1.2, 100_000),  # 12
    ]
    rows = summarize_all(runs)
    assert [r.target for r in rows] == ["pgbouncer", "multipooler"]
    pgb, mp = rows
    assert (pgb.tps, mp.tps) == (110.0, 95.0)
    assert pgb.proxy_us_per_tx is not None and mp.proxy_us_per_tx is not None
    assert round(pgb.proxy_us_per_tx, 6) == 11.0
    assert round(mp.proxy_us_per_tx, 6) == 12.0
    table, _ = run_rows(rows)
    assert table[1][7] == "0.86" and table[1][8] == "1.09"
    # One failed run fails the row.
    runs.append(_repeat_run("multipooler", 300.0, 1.0, 100_000, error="pgbench aborted"))
    assert summarize_all(runs)[1].error == "pgbench aborted"
    # A single run is reported as it is.
    assert summarize_all(runs[:2]) == runs[:2]
