"""``python -m benchmarks [--quick]``: run every benchmark and write benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.metadata as md
import os
import platform
import sys
import time
from pathlib import Path

SECTIONS = [
    ("1. Throughput (no-op tasklets, max_concurrency=64)", "bench_throughput", {}, {"sizes": (1_000, 10_000), "reps": 3}),
    ("1b. Throughput, tasklets that yield once (limits bind)", "bench_throughput",
     {"sizes": (10_000,), "body_name": "yield"}, {"sizes": (10_000,), "reps": 3, "body_name": "yield"}),
    ("2. Utilization (max_concurrency=4, 40 gpu:1 + 40 untagged, 20 ms each)", "bench_utilization", {}, {"reps": 1}),
    ("3. Deadlock probe (200 tasklets, opposite tag orders)", "bench_deadlock", {}, {}),
    ("4. Events (1,000,000 events to a DataFrame)", "bench_events", {}, {"n": 300_000, "reps": 1}),
    ("5. Planner (100k states / 500k transitions)", "bench_planner", {}, {"n_states": 20_000, "n_transitions": 100_000}),
    ("6. Watching (Workbench dashboard attached)", "bench_watching", {}, {"n": 5_000, "reps": 3}),
    ("7. Scale-out (Dask LocalCluster)", "bench_dask", {}, {}),
]  # fmt: skip


def versions() -> str:
    names = ["aura_nb", "anyio", "pandas", "numpy", "networkx", "ipywidgets", "distributed"]
    out = []
    for name in names:
        try:
            out.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller sizes; does not write RESULTS.md")
    parser.add_argument("--only", help="run only sections whose module name contains this")
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        "# Benchmark results",
        "",
        f"Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `make bench` (`python -m benchmarks`).",
        f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}.",
        f"Python {platform.python_version()}; {versions()}.",
        "",
        "Every comparison runs in one process, systems interleaved, medians over repetitions;",
        "ratios are what matters (absolute times drift on these shared machines).",
    ]
    all_ok = True
    for title, module, full, quick in SECTIONS:
        if args.only and args.only not in module:
            continue
        mod = importlib.import_module(f"benchmarks.{module}")
        kwargs = quick if args.quick else full
        t0 = time.perf_counter()
        print(f"== {title} ...", flush=True)
        result = mod.run(**kwargs)
        print(result["markdown"], f"\n({time.perf_counter() - t0:.0f} s)\n", flush=True)
        all_ok &= result["ok"]
        lines += ["", f"## {title}", "", (mod.__doc__ or "").strip(), "", result["markdown"]]
        if result.get("notes"):
            lines += ["", result["notes"]]
    if not args.quick and not args.only:
        notes = Path(__file__).with_name("NOTES.md")
        if notes.exists():
            lines += ["", notes.read_text().strip()]
        Path(__file__).with_name("RESULTS.md").write_text("\n".join(lines) + "\n")
        print("wrote benchmarks/RESULTS.md")
    print("all targets met" if all_ok else "some targets missed (see the tables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
