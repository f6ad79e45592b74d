"""Slicing the Parquet input: every row once, in order, in slices of about equal text bytes; clear errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fineforge.tasks.tokens.slices import check_columns, plan_slices, read_slice


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory):
    """Three files of real lines, in row groups of 37 rows; the second file's documents 4x longer."""
    folder = tmp_path_factory.mktemp("slices")
    lines = (shared_data / "corpora" / "tinyshakespeare.txt").read_text().splitlines()
    paths = []
    for f, (rows, lines_per_doc) in enumerate([(300, 5), (200, 20), (1, 5)]):
        texts = ["\n".join(lines[i * lines_per_doc : (i + 1) * lines_per_doc]) for i in range(rows)]
        table = pa.table({"id": [f"{f}-{i}" for i in range(rows)], "text": texts})
        paths.append(folder / f"part-{f}.parquet")
        pq.write_table(table, paths[-1], row_group_size=37)
    return paths


def read_all(slices, column="id"):
    batches = (b for s in slices for b in read_slice(s, ["id", "text"], batch_rows=50))
    return [v for b in batches for v in b.column(column).to_pylist()]


@pytest.mark.parametrize("count", [1, 2, 7, 40, 1000])
def test_slices_cover_every_row_once_in_order(files, count):
    slices = plan_slices(files, "text", count)
    expected = [i for f in files for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()]
    assert read_all(slices) == expected
    assert all(s.start < s.stop for s in slices)
    assert len(files) <= len(slices) <= max(count, len(files)) + len(files)


def test_slices_hold_about_equal_text(files):
    slices = plan_slices(files[:2], "text", 8)
    sizes = [sum(len(t) for t in read_all([s], "text")) for s in slices]
    assert len(slices) == 8
    assert max(sizes) < 1.5 * min(sizes)


def test_missing_column_names_the_file(files):
    check_columns(files, ["id", "text"])
    with pytest.raises(ValueError, match=r"part-0.parquet has no column 'body'"):
        check_columns(files, ["id", "body"])
