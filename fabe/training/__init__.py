"""Training: the options (`config`), the shared `prompt`, models and LoRA (`modeling`), token
`encoding` and batches, `packing` (each prompt once with its candidates, block attention, chunked
log-probabilities), the FABE `losses`, the `trainer` (MLE + ranking), its `callbacks`
(metrics, graceful stop), a training `run` from its run folder's config.json, the
`estimate` of a run's duration before launch (a timed probe), the `planner` of its memory and
speed from the model's config, and the `recipe` of the embedded
cleaner."""
