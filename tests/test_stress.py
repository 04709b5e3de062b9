"""Stress: random mixes of tasklets on a real manager, on asyncio and trio.

Each hypothesis example runs a fresh manager with random capacities and a random mix of
tasklets that succeed, raise, time out, are cancelled while waiting, running or
planning, with hooks that raise and capacities that grow mid-run. After every example:
no limit was ever exceeded (counted inside the tasks), every permit came back, every
tasklet has exactly one terminal status and one ``after_task_run``, and it all ended in
bounded time (no deadlock).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aura_nb as an
from aura_nb.examples.game import GameDevice, make_game_plan

RESOURCES = ("a", "b", "c")
BEHAVIOURS = ("ok", "raise", "timeout", "cancel_early", "cancel_running", "plan", "plan_fail", "cancel_planning", "sync")


@dataclass(frozen=True)
class Spec:
    names: tuple[str, ...]
    behaviour: str
    delay: float


specs_strategy = st.lists(
    st.builds(
        Spec,
        names=st.lists(st.sampled_from(RESOURCES), unique=True, max_size=3).map(tuple),
        behaviour=st.sampled_from(BEHAVIOURS),
        delay=st.sampled_from((0.0, 0.001, 0.003)),
    ),
    min_size=1,
    max_size=25,
)


class Boom(Exception):
    pass


async def scenario(specs: list[Spec], caps: dict[str, int], global_cap: int, raising_hook: bool, grow: bool) -> None:
    device = GameDevice(delay=0.002)
    plan = make_game_plan(device)
    holders: Counter[str] = Counter()
    capacity = {"global": global_cap, **caps}
    violations: list[str] = []

    def make_body(spec: Spec):
        names = ("global", *spec.names)

        async def body() -> str:
            for n in names:
                holders[n] += 1
                if holders[n] > capacity[n]:
                    violations.append(f"{n}: {holders[n]} > {capacity[n]}")
            try:
                if spec.behaviour == "raise":
                    await anyio.sleep(spec.delay)
                    raise Boom("planned failure")
                if spec.behaviour in ("timeout", "cancel_running"):
                    await anyio.sleep(5)
                await anyio.sleep(spec.delay)
                return "ok"
            finally:
                for n in names:
                    holders[n] -= 1

        return body

    def sync_body() -> str:
        return "sync ok"

    async with an.ExecutionManager(plans=[plan], max_concurrency=global_cap, capacities={**caps, "device": 1}) as em:
        if raising_hook:
            em.hooks.on("after_task_run", lambda ev: 1 / 0)
            em.hooks.on("before_task_run", lambda ev: 1 / 0)
        handles: list[tuple[Spec, an.TaskletHandle]] = []
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for k, spec in enumerate(specs):
                    if spec.behaviour in ("plan", "plan_fail", "cancel_planning"):
                        # planning tasklets share the device: the device resource serialises them
                        t = an.Tasklet("game/daily_quests", params={"rounds": 1}, resource_tags=("device", *spec.names),
                                       required_initial_state="logged_in" if k % 2 else "in_game_at_home")  # fmt: skip
                    elif spec.behaviour == "sync":
                        t = an.Tasklet(sync_body, resource_tags=spec.names)
                    else:
                        timeout = 0.01 if spec.behaviour == "timeout" else None
                        t = an.Tasklet(make_body(spec), resource_tags=spec.names, timeout=timeout)
                    if spec.behaviour == "plan_fail":
                        device.state = "nowhere"  # no check matches: planning fails
                    handle = em.start(t)
                    handles.append((spec, handle))
                    if spec.behaviour == "cancel_early":
                        handle.cancel()
                    elif spec.behaviour in ("cancel_running", "cancel_planning"):

                        async def cancel_later(h: an.TaskletHandle = handle) -> None:
                            await anyio.sleep(0.005)
                            h.cancel()

                        tg.start_soon(cancel_later)
                    if grow and k == len(specs) // 2:
                        name = RESOURCES[k % 3]
                        capacity[name] += 1
                        em.set_capacity(name, capacity[name])
                    if spec.behaviour == "plan_fail":
                        device.state = "logged_out"
                for _, handle in handles:
                    try:
                        await handle
                    except (Boom, an.AuraError):
                        pass
        stats = em.statistics()
        assert stats.idle, stats
    assert not violations, violations
    frame = em.events.to_frame()
    after = frame[frame["event"] == "after_task_run"]
    assert after["tasklet_id"].value_counts().max() == 1
    assert len(after) == len(specs)
    status_of = dict(zip(after["tasklet_id"], after["status"]))
    for spec, handle in handles:
        assert handle.done()
        assert status_of[handle.id] == handle.status
        if spec.behaviour == "raise":
            assert handle.status in ("failed", "cancelled")
        if spec.behaviour == "timeout":
            assert handle.status == "timeout"
        if spec.behaviour == "cancel_early":
            assert handle.status == "cancelled"
    if raising_hook:
        assert (frame["event"] == "hook_error").sum() >= 1


@pytest.mark.slow  # 60 random scenarios per backend; `make test-fast` leaves them to `make test`
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=specs_strategy,
    caps=st.fixed_dictionaries({name: st.integers(1, 3) for name in RESOURCES}),
    global_cap=st.integers(1, 6),
    raising_hook=st.booleans(),
    grow=st.booleans(),
)
def test_random_mixes_keep_every_invariant(
    backend: str, specs: list[Spec], caps: dict[str, int], global_cap: int, raising_hook: bool, grow: bool
) -> None:
    anyio.run(scenario, specs, caps, global_cap, raising_hook, grow, backend=backend)
