"""Workload 5: ``StatePlanner.find_path`` on a random graph of 100k states and 500k
transitions, against ``networkx.dijkstra_path`` on the same graph (both prebuilt; only
the search is timed). Same cost required. Target: <= 0.5x networkx's time.
"""

from __future__ import annotations

import random
import time
from typing import Any

import networkx as nx

from aura_nb.core import StatePlanner, Transition

from ._util import median, table, verdict


def make_graph(n_states: int, n_transitions: int, seed: int = 1) -> tuple[list[str], list[Transition], nx.DiGraph]:
    rng = random.Random(seed)
    states = [f"s{i}" for i in range(n_states)]
    transitions = []
    graph = nx.DiGraph()
    graph.add_nodes_from(states)
    for _ in range(n_transitions):
        a, b = rng.randrange(n_states), rng.randrange(n_states)
        cost = rng.randint(1, 100)
        transitions.append(Transition(states[a], states[b], "go", float(cost)))
        if a != b:
            old = graph.get_edge_data(states[a], states[b])
            if old is None or cost < old["weight"]:
                graph.add_edge(states[a], states[b], weight=cost)
    return states, transitions, graph


def run(n_states: int = 100_000, n_transitions: int = 500_000, queries: int = 5, reps: int = 3) -> dict[str, Any]:
    states, transitions, graph = make_graph(n_states, n_transitions)
    t0 = time.perf_counter()
    planner = StatePlanner(states, transitions, plan="bench")
    build_s = time.perf_counter() - t0
    rng = random.Random(2)
    pairs = [(rng.choice(states), rng.choice(states)) for _ in range(queries)]
    ours_t, theirs_t = [], []
    for source, target in pairs:
        for _ in range(reps):
            t0 = time.perf_counter()
            path = planner.find_path(source, target)
            ours_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ref = nx.dijkstra_path(graph, source, target, weight="weight")
            theirs_t.append(time.perf_counter() - t0)
        ref_cost = sum(graph[a][b]["weight"] for a, b in zip(ref, ref[1:]))
        assert path.total_cost == ref_cost, (source, target, path.total_cost, ref_cost)
    ratio = median(ours_t) / median(theirs_t)
    rows = [[f"{n_states:,} states / {n_transitions:,} transitions", median(ours_t), median(theirs_t), ratio,
             verdict(ratio <= 0.5)]]  # fmt: skip
    md = table(["graph", "find_path s", "networkx.dijkstra_path s", "ratio (≤ 0.5)", "target"], rows)
    md += f"\n\nCompiling the planner once (not timed above): {build_s:.2f} s. Costs equal networkx's on every query."
    return {"markdown": md, "ok": ratio <= 0.5}


if __name__ == "__main__":
    print(run()["markdown"])
