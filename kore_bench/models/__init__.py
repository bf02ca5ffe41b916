"""Models: kore-tiny (``tiny``, ``tokenizer``), loading any HF image-text-to-text model
(``loading``), batched generation (``generation``) and model introspection (``parts``).

Import the submodules directly; this package itself imports nothing heavy.
"""
