"""One manager in its own process, for tests/test_shared_limits.py (and the notebook).

Usage: ``python _shared_limits_child.py '<json>'`` with keys:

* ``address``, ``pool``, ``backend`` ("asyncio" or "trio"), ``label``,
  ``lease_timeout``, ``register`` (load the plugin from here, default true),
  ``rates`` (the manager's ``rates=``);
* ``mode``:
  - ``"batch"``: ``n`` tasklets with ``tags`` (a list, or a list of lists used in
    turn), each sleeping ``sleep`` s, started at once; ``max_concurrency``;
  - ``"stream"``: for ``duration`` s, keep starting tasklets of each tag list in
    ``tags`` (at most ``in_flight`` at once), each sleeping ``sleep``;
  - ``"late"``: wait ``delay`` s, then submit one tasklet with ``tags``;
  - ``"hold"``: start ``n`` tasklets with ``tags`` that sleep ``sleep`` s (long), print
    ``holding`` once the first runs, then wait.

Prints one JSON line: ``{"intervals": [[start, end, label], ...], "errors": [...],
"submitted": {...}}`` with ``time.monotonic()`` stamps (one clock for every process of
the machine).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio
import distributed

import aura_nb as an

intervals: list[list[Any]] = []


async def body(sleep: float, label: str) -> None:
    start = time.monotonic()
    await anyio.sleep(sleep)
    intervals.append([start, time.monotonic(), label])


async def main(cfg: dict[str, Any]) -> dict[str, Any]:
    client = distributed.Client(cfg["address"], timeout="20s")
    out: dict[str, Any] = {"errors": [], "intervals": intervals}
    try:
        limits = an.DaskLimits(
            client, name=cfg["pool"], label=cfg.get("label"), lease_timeout=cfg.get("lease_timeout", 30.0),
            register=cfg.get("register", True),
        )  # fmt: skip
        label = cfg.get("label", "child")
        tags = cfg["tags"]
        tag_sets = tags if tags and isinstance(tags[0], list) else [tags]
        mode = cfg["mode"]
        async with an.ExecutionManager(
            limits=limits, max_concurrency=cfg.get("max_concurrency", 8), rates=cfg.get("rates")
        ) as em:
            if mode == "batch":
                handles = [
                    em.start(an.Tasklet(body, params={"sleep": cfg["sleep"], "label": label},
                                        resource_tags=tag_sets[i % len(tag_sets)]))
                    for i in range(cfg["n"])
                ]  # fmt: skip
                await collect(handles, out)
            elif mode == "stream":
                handles = []
                end = time.monotonic() + cfg["duration"]
                while time.monotonic() < end:
                    live = sum(1 for h in handles if not h.done())
                    if live < cfg["in_flight"]:
                        for ts in tag_sets:
                            handles.append(em.start(an.Tasklet(body, params={"sleep": cfg["sleep"], "label": label},
                                                               resource_tags=ts)))  # fmt: skip
                    await anyio.sleep(0.005)
                await collect(handles, out)
            elif mode == "late":
                await anyio.sleep(cfg["delay"])
                t0 = time.monotonic()
                await em.submit(an.Tasklet(body, params={"sleep": cfg["sleep"], "label": label}, resource_tags=tags))
                out["submitted"] = t0
            elif mode == "hold":
                handles = [
                    em.start(an.Tasklet(body, params={"sleep": cfg["sleep"], "label": label}, resource_tags=tags))
                    for _ in range(cfg["n"])
                ]
                while em.statistics().running == 0:
                    await anyio.sleep(0.01)
                print("holding", flush=True)
                await collect(handles, out)
    finally:
        client.close()
    return out


async def collect(handles: list[Any], out: dict[str, Any]) -> None:
    for handle in handles:
        try:
            await handle
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out["errors"].append(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    result = anyio.run(main, config, backend=config.get("backend", "asyncio"))
    print(json.dumps(result), flush=True)
