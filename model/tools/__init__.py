"""Tools a model calls while it generates: the Python sandbox (corpus search comes from tasks.search)."""
