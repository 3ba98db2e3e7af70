"""Briefs in: the brief schema and the brief-file readers (YAML, JSON, JSONL, CSV)."""
