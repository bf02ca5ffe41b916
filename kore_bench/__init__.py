"""kore-bench: a benchmark harness for knowledge injection into large multimodal models."""
__version__ = "0.1.0"
