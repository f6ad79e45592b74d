"""The one document writer: every part it writes has DOCUMENT_SCHEMA, from rows or from Arrow batches, and a
part exists only complete; documents that cannot fit are refused with the column named."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fineforge.tasks.common.documents import (
    DOCUMENT_SCHEMA,
    PartWriter,
    SchemaError,
    hash_below,
    parquet_files,
    part_file_name,
)


@pytest.fixture(scope="module")
def pages(shared_data) -> list[tuple[str, str]]:
    """(url, text) of real pages: the kept snippets of trafilatura's evaluation set."""
    evaldata = json.loads((shared_data / "html" / "trafilatura-evaldata.json").read_text())
    return [(url, "\n".join(entry["with"])) for url, entry in list(evaldata.items())[:40] if entry.get("with")]


def test_rows_and_batches_are_written_with_the_document_schema(pages, tmp_path):
    path = tmp_path / part_file_name(3)
    rows = [{"id": f"r{i}", "text": text, "url": url} for i, (url, text) in enumerate(pages[:10])]
    batch = pa.RecordBatch.from_pydict({  # other types, a column the schema lacks, no text_length
        "url": [url for url, _ in pages[10:]],
        "text": pa.array([text for _, text in pages[10:]], pa.large_string()),
        "id": [f"b{i}" for i in range(len(pages) - 10)],
        "warc_offset": pa.array(range(len(pages) - 10), pa.int32()),
        "not_a_column": [1] * (len(pages) - 10),
    })
    with PartWriter(path, batch_rows=4) as writer:
        for row in rows:
            writer.write(row)
        writer.write_batch(batch)
    assert writer.rows == len(pages) and writer.bytes == path.stat().st_size
    assert path.name == "part-00003.parquet" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == DOCUMENT_SCHEMA.remove_metadata()
    assert table.column("text").to_pylist() == [text for _, text in pages]
    assert table.column("text_length").to_pylist() == [len(text) for _, text in pages]
    assert table.column("id").to_pylist()[9:11] == ["r9", "b0"]
    assert table.column("warc_offset").to_pylist()[10:12] == [0, 1] and table.column("dump").null_count == len(pages)


@pytest.mark.parametrize(("columns", "message"), [
    ({"id": ["a"]}, "lack the column 'text'"),
    ({"id": ["a", None], "text": ["x", "y"]}, "column 'id' holds 1 nulls"),
    ({"id": ["a"], "text": ["x"], "warc_offset": ["twelve"]}, "column 'warc_offset' is not int64"),
])
def test_documents_that_do_not_fit_are_refused_and_leave_no_part(tmp_path, columns, message):
    path = tmp_path / part_file_name(0)
    with pytest.raises(SchemaError, match=message), PartWriter(path) as writer:
        writer.write_batch(pa.RecordBatch.from_pydict(columns))
    assert list(tmp_path.iterdir()) == []


def test_an_empty_part_still_exists_and_hidden_files_are_not_parts(tmp_path):
    with PartWriter(tmp_path / part_file_name(0)):
        pass
    (tmp_path / ".part-00001.parquet.1234.tmp").write_bytes(b"unfinished")
    assert pq.read_table(tmp_path / part_file_name(0)).num_rows == 0
    assert parquet_files([tmp_path]) == [tmp_path / part_file_name(0)]


def test_hash_below_keeps_a_stable_share_of_keys():
    keys = [f"<urn:uuid:{i:08d}>" for i in range(20_000)]
    tenth = {key for key in keys if hash_below(key, 0.1)}
    assert 0.09 < len(tenth) / len(keys) < 0.11
    assert tenth == {key for key in keys if hash_below(key, 0.1)}
    assert tenth < {key for key in keys if hash_below(key, 0.3)}  # a larger fraction keeps a superset
    assert not any(hash_below(key, 0.0) for key in keys) and all(hash_below(key, 1.0) for key in keys)
