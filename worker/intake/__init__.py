"""Briefs in: the brief schema (:mod:`.briefs`), the readers of YAML, JSON, JSONL and CSV files that brief files,
job files and job data files share (:mod:`.readers`), record validation (:mod:`.validation`), problems with
their file, record and field (:mod:`.problems`), and loading brief files (:mod:`.loading`)."""
