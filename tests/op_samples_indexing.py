"""Sample inputs of the indexing ops, merged into tests/op_samples.py's table (same `Case`
conventions: seeded inputs inside each op's domain, keyed by op name)."""
from __future__ import annotations

TABLE: dict = {}
