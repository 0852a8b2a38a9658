"""Training: the options (`config`), the shared `prompt`, models and LoRA (`modeling`), token
`encoding` and batches, the FABE `losses`, the `trainer` (MLE + ranking), its `callbacks`
(metrics, graceful stop), a training `run` from its run folder's config.json, and the
`recipe` of the embedded cleaner."""
