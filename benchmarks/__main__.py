"""``python -m benchmarks [--quick] [--only NAME] [--record]``: run the benchmarks.

The results go to ``build/benchmarks/RESULTS.md`` (``RESULTS-quick.md`` with ``--quick``,
``RESULTS-partial.md`` with ``--only``); ``--record`` (``make bench RECORD=1``) writes the
committed ``benchmarks/RESULTS.md`` instead, and only for a full run. The exit status is
1 when a target is missed, so a missed target fails ``make bench``.
"""

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
    ("8. Admission with 10,000 distinct tag sets", "bench_admission", {}, {"n": 2_000, "reps": 1}),
    ("9. Rate quota against a local HTTP server", "bench_rates", {}, {"seconds": 3.0, "backends": ("asyncio",)}),
    ("10. Shared limits (Dask scheduler, LocalCluster)", "bench_shared", {}, {"reps": 1}),
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
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--only", help="run only sections whose module name contains this")
    parser.add_argument("--record", action="store_true", help="write the committed benchmarks/RESULTS.md (full runs only)")
    args = parser.parse_args()
    if args.record and (args.quick or args.only):
        parser.error("--record writes the committed results: it needs a full run (no --quick, no --only)")
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
        f"Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by "
        + ("`make bench RECORD=1` (`python -m benchmarks --record`)." if args.record else "`python -m benchmarks`."),
        f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}.",
        f"Python {platform.python_version()}; {versions()}.",
        "",
        "Every comparison runs in one process, systems interleaved, medians over repetitions;",
        "ratios are what matters (absolute times drift with the machine and its load).",
    ]
    missed = []
    for title, module, full, quick in SECTIONS:
        if args.only and args.only not in module:
            continue
        mod = importlib.import_module(f"benchmarks.{module}")
        kwargs = quick if args.quick else full
        t0 = time.perf_counter()
        print(f"== {title} ...", flush=True)
        result = mod.run(**kwargs)
        print(result["markdown"], f"\n({time.perf_counter() - t0:.0f} s)\n", flush=True)
        if not result["ok"]:
            missed.append(title)
        lines += ["", f"## {title}", "", (mod.__doc__ or "").strip(), "", result["markdown"]]
        if result.get("notes"):
            lines += ["", result["notes"]]
    if args.quick or args.only:
        lines[2] += " Not a full run: " + ("smaller sizes" if args.quick else f"only --only {args.only}") + "."
    elif (notes := Path(__file__).with_name("NOTES.md")).exists():
        lines += ["", notes.read_text().strip()]
    if args.record:
        out = Path(__file__).with_name("RESULTS.md")
    else:
        name = "RESULTS-quick.md" if args.quick else "RESULTS-partial.md" if args.only else "RESULTS.md"
        out = Path(__file__).resolve().parents[1] / "build" / "benchmarks" / name
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    if missed:
        print("targets missed in: " + "; ".join(missed) + " (see their tables)", file=sys.stderr)
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
