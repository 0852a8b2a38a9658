"""FABE Studio: train and use backdoor cleaners for source code.

The library holds the data pipeline (corpus, triggers, Tuna-format datasets), the models and,
in later modules, training and cleaning. It never imports Gradio; `pages/` does.
"""

__version__ = "0.1.0"
