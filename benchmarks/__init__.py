"""Side-by-side benchmarks of aura_nb against raw asyncio and an Aura-style manager.

Run ``make bench`` (``python -m benchmarks``). Every comparison runs in one process,
systems interleaved, medians over repetitions, and is reported as a ratio: absolute
times drift on shared machines. Results go to ``benchmarks/RESULTS.md``.
"""
