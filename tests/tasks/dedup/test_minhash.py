"""Per-document MinHash signatures and the per-cluster keep rule, against datatrove's own steps."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupCluster, MinhashDedupSignature

from fineforge.tasks.dedup.minhash import SHINGLE_CHUNK, MinhashSigner, cluster_survivor, minhash_config
from testkit.dedup_corpus import real_texts


def datatrove_signatures(texts: list[str], config: MinhashConfig, folder) -> dict[int, list[list[int]]]:
    """Run datatrove's MinhashDedupSignature and read its bucket files back: {doc index: signature}."""
    MinhashDedupSignature(output_folder=str(folder), config=config).run(
        (Document(text=text, id=str(i)) for i, text in enumerate(texts)), rank=0
    )
    fmt = config.hash_config.struct_format
    record = struct.Struct(f"<{config.hashes_per_bucket}{fmt}I")
    signatures: dict[int, list[list[int]]] = {}
    for bucket in range(config.num_buckets):
        data = (folder / f"bucket_{bucket:03d}" / "00000.minhash.sig").read_bytes()
        for values in record.iter_unpack(data):
            signatures.setdefault(values[-1], [None] * config.num_buckets)[bucket] = list(values[:-1])
    return signatures


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    sample = random.Random(3).sample(real_texts(shared_data), 40)
    shakespeare = (shared_data / "corpora" / "tinyshakespeare.txt").read_text()
    longest = shakespeare[: 12 * SHINGLE_CHUNK]  # more shingles than one chunk
    return [*sample, longest, "", "   ", "two words", "exactly five words in here"]


@pytest.mark.parametrize(
    ("hash_fc", "precision"), [("xxhash", 64), ("sha1", 64), ("xxhash", 32)], ids=["default", "fineweb-sha1", "32bit"]
)
def test_signatures_equal_datatrove(texts, tmp_path, hash_fc, precision):
    config = minhash_config(hash_fc=hash_fc, precision=precision)
    expected = datatrove_signatures(texts, config, tmp_path)
    signer = MinhashSigner(config)
    ours = {i: signer.signature(text) for i, text in enumerate(texts)}
    assert {i: sig for i, sig in ours.items() if sig is not None} == expected
    assert len(signer.shingles(texts[-5])) > SHINGLE_CHUNK
    # no shingle: datatrove writes no signature, and neither do we
    assert [ours[len(texts) - k] for k in (4, 3, 2)] == [None, None, None]
    assert ours[len(texts) - 1] is not None


def _random_duplicate_pairs(rng: random.Random, nodes: int, buckets: int) -> list[tuple[int, tuple[int], int, int]]:
    """Band groups of random documents in each bucket, as the adjacent pairs datatrove writes."""
    pairs = []
    for bucket in range(buckets):
        for band in sorted(rng.sample(range(1 << 30), rng.randint(3, 12))):
            members = sorted(rng.sample(range(nodes), rng.randint(2, 4)))
            pairs.extend((bucket, (band,), a, b) for a, b in zip(members, members[1:], strict=False))
    return pairs


def _components(pairs) -> list[list]:
    groups: dict[int, set[int]] = {}
    for pair in pairs:
        merged = {pair[2], pair[3]}
        for node in (pair[2], pair[3]):
            merged |= groups.get(node, set())
        for node in merged:
            groups[node] = merged
    unique = {id(group): group for group in groups.values()}.values()
    return [[p for p in pairs if p[2] in group] for group in unique]


@pytest.mark.parametrize("seed", range(6))
def test_cluster_survivor_keeps_what_datatrove_keeps(tmp_path, seed):
    rng = random.Random(seed)
    buckets = 3
    pairs = _random_duplicate_pairs(rng, nodes=40, buckets=buckets)
    dups, out = tmp_path / "dups", tmp_path / "remove"
    dups.mkdir()
    for bucket in range(buckets):
        rows = [struct.pack("<4I", 0, a, 0, b) for (bk, _band, a, b) in sorted(pairs) if bk == bucket]
        (dups / f"{bucket:05d}_00.dups").write_bytes(b"".join(rows))
    MinhashDedupCluster(input_folder=str(dups), output_folder=str(out), config=MinhashConfig(num_buckets=buckets)).run()
    expected = set(np.frombuffer((out / "000000.remove").read_bytes(), dtype="<u4").tolist())

    removed: set[int] = set()
    for cluster_pairs in _components(pairs):
        rng.shuffle(cluster_pairs)  # the order of arrival must not matter, only datatrove's sort order
        kept, members = cluster_survivor(cluster_pairs)
        removed |= members - {kept}
    assert removed == expected


def test_cluster_survivor_is_not_simply_the_smallest():
    # bucket 0 joins 2-3 first, so {2, 3} is larger than {1} when bucket 1 pairs 1-2: 2 stays the root
    kept, members = cluster_survivor([(1, (5,), 1, 2), (0, (9,), 2, 3)])
    assert (kept, members) == (2, {1, 2, 3})


def test_cluster_survivor_rejects_two_clusters():
    with pytest.raises(ValueError, match="2 clusters"):
        cluster_survivor([(0, (1,), 1, 2), (0, (2,), 3, 4)])
