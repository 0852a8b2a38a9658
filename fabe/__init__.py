"""FABE Studio: train and use backdoor cleaners for source code.

The library follows the pipeline, one sub-package per stage:

    data        corpora of C functions -> triggers -> Tuna-format datasets
    training    config -> encoding -> FABE loss -> Trainer -> a run folder
    cleaning    a trained cleaner -> K ranked candidates (diverse beam search), export
    evaluation  how well a cleaner restores held-out code
    defense     victim classifiers under FABE's front-door defense and baselines
    runs        the run manager: detached runs, GPU queue, stop, resume

beside a few foundations: `rundir` (the run folder contract), `files` (atomic writes),
`embedded` (what the name `embedded` stands for), `home`, `paths` (confinement of typed
paths), `registry` (choices by name) and `cli` (`python -m fabe`). The library never
imports Gradio; `pages/` does.
"""

__version__ = "0.1.0"
