"""evalmap: model-to-dataset mapping turned into evaluations that run."""
__version__ = "0.1.0"
