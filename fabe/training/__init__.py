"""Training: the options (`config`), the shared `prompt`, models and LoRA (`modeling`), token
`encoding` and batches, the FABE `losses`, the `trainer` (MLE + ranking), its `callbacks`
(metrics, graceful stop), a training `run` from its run folder's config.json, the
`estimate` of a run's duration before launch (a timed probe), and the `recipe` of the embedded
cleaner."""
