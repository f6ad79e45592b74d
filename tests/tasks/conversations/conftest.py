"""A built corpus with its search index, shared by the search-tool data tests."""

from __future__ import annotations

import pytest

from fineforge.tasks.search.config import SearchIndexConfig
from fineforge.tasks.search.job import build_search_index
from testkit.search_corpus import write_sample_corpus


@pytest.fixture(scope="session")
def search_corpus(shared_data, tmp_path_factory):
    """A work dir holding the sample WARCs' real documents as the built corpus, and their search index."""
    workdir = tmp_path_factory.mktemp("search-corpus")
    write_sample_corpus(shared_data, workdir)
    build_search_index(workdir, SearchIndexConfig(workdir=str(workdir)))
    return workdir
