"""Connected components of a large graph with Spark DataFrames: alternating large-star / small-star.

Kiveris et al., "Connected Components in MapReduce and Beyond" (SoCC 2014). Each round is a few joins and
aggregations over the edge list; it converges in O(log^2 n) rounds to one star per component whose centre
is the component's smallest node. Nothing is collected on the driver: every round's edges are
checkpointed to executor disk (released by Spark's cleaner once unreferenced), so neither the query plan
nor any memory grows with the graph.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

# Safety limit: large/small-star needs O(log^2 n) rounds; 1e9 nodes need far fewer than this.
MAX_ROUNDS = 100


@dataclass
class Components:
    """`labels` has one row (node, component) per node of an edge; component = smallest node in it."""

    labels: DataFrame
    rounds: int


def _checkpoint(edges: DataFrame) -> DataFrame:
    return edges.localCheckpoint(eager=True, storageLevel=StorageLevel.DISK_ONLY)


def _both_directions(edges: DataFrame) -> DataFrame:
    return edges.select("u", "v").unionByName(edges.select(F.col("v").alias("u"), F.col("u").alias("v")))


def large_star(edges: DataFrame) -> DataFrame:
    """Connect every strictly larger neighbour v of u to the smallest node of u's neighbourhood (incl. u)."""
    both = _both_directions(edges)
    smallest = both.groupBy("u").agg(F.least(F.min("v"), F.col("u")).alias("m"))
    return (
        both.where(F.col("v") > F.col("u"))
        .join(smallest, "u")
        .select(F.col("v").alias("u"), F.col("m").alias("v"))
        .distinct()
    )


def small_star(edges: DataFrame) -> DataFrame:
    """Connect u and every smaller neighbour of u to the smallest of them."""
    down = edges.select(F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v"))
    smallest = down.groupBy("u").agg(F.min("v").alias("m"))
    neighbours = down.join(smallest, "u").select(F.col("v").alias("u"), "m")
    centre = smallest.select("u", "m")
    return neighbours.unionByName(centre).where(F.col("u") != F.col("m")).select("u", F.col("m").alias("v")).distinct()


def _is_star_forest(edges: DataFrame) -> bool:
    """True when every edge (u -> v) has one parent per child and no parent is itself a child (one job)."""
    children = edges.groupBy("u").agg(F.count("*").alias("parents"))
    parents = edges.select(F.col("v").alias("u"), F.lit(True).alias("is_parent")).distinct()
    offending = (
        children.join(parents, "u", "full_outer")
        .where((F.col("parents") > 1) | (F.col("parents").isNotNull() & F.col("is_parent").isNotNull()))
        .limit(1)
    )
    return offending.isEmpty()


def connected_components(edges: DataFrame, src: str = "src", dst: str = "dst") -> Components:
    """Label every node of the undirected graph `edges` (columns `src`, `dst`, long) with its component."""
    current = _checkpoint(
        edges.select(F.col(src).cast("long").alias("u"), F.col(dst).cast("long").alias("v"))
        .where(F.col("u") != F.col("v"))
        .select(F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v"))
        .distinct()
    )
    rounds = 0
    while True:
        if rounds >= MAX_ROUNDS:
            raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")
        rounds += 1
        current = _checkpoint(small_star(large_star(current)))
        converged = _is_star_forest(current)
        log.info("connected components: round %d done (converged: %s)", rounds, converged)
        if converged:
            break
    centres = current.select(F.col("v").alias("node"), F.col("v").alias("component")).distinct()
    labels = current.select(F.col("u").alias("node"), F.col("v").alias("component")).unionByName(centres)
    return Components(labels=labels, rounds=rounds)
