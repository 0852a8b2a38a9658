"""Data: C corpora (real loaders in `corpus`, the embedded `generator`), parsing (`cparse`),
backdoor `triggers` with their recorded edits, the Tuna-format `dataset` (records, strict
loading, statistics; files read through `jsonio`, which names file, line and field of every
problem), the `builder` that turns a corpus into poisoned train/valid/test splits with
scored candidates, and the shipped real `examples` (held-out projects, permissive licences)."""
