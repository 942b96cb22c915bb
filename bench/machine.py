"""The machine a micro-benchmark ran on, printed next to its numbers."""

from __future__ import annotations

import os
import platform
from typing import Any


def describe() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def report_per_op(benchmark: Any, capsys: Any, name: str, ops: int, unit: str) -> None:
    """Record and print a timed workload of ``ops`` operations (``unit``: "row" in ns, or
    "statement" in us); nothing when pytest-benchmark did not time it (--benchmark-disable:
    the workload ran once as a test)."""
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return
    mean = stats.stats.mean
    scale, label = (1e9, "ns") if unit == "row" else (1e6, "us")
    per_op = mean / ops * scale
    benchmark.extra_info.update({
        "workload": name, f"{unit}s": ops, f"per_{unit}_{label}": round(per_op, 3),
        f"{unit}s_per_s": round(ops / mean), "machine": describe(),
    })
    with capsys.disabled():
        print(f"\n  {name}: {per_op:.2f} {label} per {unit} ({ops / mean / 1e6:.2f} M {unit}s/s)"
              f" [1 thread; {describe()}]")
