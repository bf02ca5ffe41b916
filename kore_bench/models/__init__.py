"""Models: kore-tiny (``tiny``, ``tokenizer``), loading any HF image-text-to-text model
(``loading``) and model introspection (``parts``); generation lives in :mod:`kore_bench.evaluate`.

Import the submodules directly; this package itself imports nothing heavy.
"""
