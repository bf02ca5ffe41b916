"""Evaluation: the one home of how a model is asked and scored.

* :mod:`.generation` — batched greedy generation (left padding, KV cache) and prompt encoding;
* :mod:`.backends` — evaluator backends chosen by a task's declared ``output_type``
  (generate, multiple choice by generated letter or by log-likelihood, yes/no, lm-eval) and
  :func:`~.backends.evaluate_suite`;
* :mod:`.metrics` — registered metrics (per-sample or corpus-level, with their aggregation,
  ``higher_is_better`` and protocol), the K.A / K.R / Avg aggregates and the paired test;
* :mod:`.lm_eval_tasks` — lm-evaluation-harness tasks scored by lm-eval itself.

Scores do not depend on the evaluation batch size (``tests/test_batch_invariance.py``).
"""
