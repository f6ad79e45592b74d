"""Connected components on Spark (large-star / small-star) on graphs whose components are known."""

from __future__ import annotations

import random

import pytest

from fineforge.tasks.dedup.connected_components import connected_components


def reference_components(edges: list[tuple[int, int]]) -> dict[int, int]:
    """node -> smallest node of its component, by breadth-first search."""
    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    labels: dict[int, int] = {}
    for start in sorted(neighbours):
        if start in labels:
            continue
        seen, frontier = {start}, [start]
        while frontier:
            frontier = [n for node in frontier for n in neighbours[node] if n not in seen]
            seen.update(frontier)
        labels.update(dict.fromkeys(seen, min(seen)))
    return labels


def labels_of(spark, edges: list[tuple[int, int]]) -> tuple[dict[int, int], int]:
    result = connected_components(spark.createDataFrame(edges, "src long, dst long"))
    return {row["node"]: row["component"] for row in result.labels.collect()}, result.rounds


def _random_graph(seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    nodes = rng.sample(range(10**12), 300)  # sparse, large ids like document keys
    return [(rng.choice(nodes), rng.choice(nodes)) for _ in range(260)]


GRAPHS = {
    "short path in scrambled order": [(i * 7919 % 31, (i + 1) * 7919 % 31) for i in range(30)],
    "star, triangle, pair, self loop": [(5, 1), (5, 2), (5, 3), (10, 11), (11, 12), (12, 10), (20, 21), (30, 30)],
    "random sparse": _random_graph(0),
    "random denser": _random_graph(1)[:200] + [(a, b) for a, b in _random_graph(2)],
}


@pytest.mark.parametrize("name", GRAPHS)
def test_components_match_breadth_first_search(spark, name):
    edges = GRAPHS[name]
    labels, rounds = labels_of(spark, edges)
    expected = reference_components([(a, b) for a, b in edges if a != b])
    assert labels == expected
    assert rounds >= 1


def test_long_path_needs_several_rounds_but_few(spark):
    path = [(i, i + 1) for i in range(128)]
    labels, rounds = labels_of(spark, path)
    assert set(labels.values()) == {0}
    # large/small-star converges in O(log^2 n) rounds, far fewer than the path's diameter
    assert 1 < rounds < 40


def test_no_edges_gives_no_labels(spark):
    labels, rounds = labels_of(spark, [])
    assert labels == {}
    assert rounds == 1
