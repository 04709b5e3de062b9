"""Side-by-side benchmarks of aura_nb against raw asyncio, a plain worker pool and an
Aura-style manager.

Run ``make bench`` (``python -m benchmarks``). Every comparison runs in one process,
systems interleaved, medians over repetitions, and is reported as a ratio: absolute
times drift with the machine and its load. Results go to ``build/benchmarks/RESULTS.md``;
``make bench RECORD=1`` (``--record``) updates the committed ``benchmarks/RESULTS.md``.
A missed target makes the run exit with status 1.
"""
