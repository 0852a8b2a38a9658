"""Data: C corpora (real loaders in `corpus`, the embedded `generator`), parsing (`cparse`),
backdoor `triggers` built on their recorded `edits` (the adaptive ones: guided `renaming`,
`style` rewrites), a trigram code model (`ngram`), the Tuna-format `dataset` (records, strict
loading, statistics; files read through `jsonio`, which names file, line and field of every
problem), the `builder` that turns a corpus into poisoned train/valid/test splits with
scored candidates, and the shipped real `examples` (held-out projects, permissive licences)."""
