"""Studies built from ordinary runs: equal-budget tuning (:mod:`.tune`), adaptation–retention
frontiers (:mod:`.frontier`), the null-space diagnostic (:mod:`.diagnose`), their shared trial
helpers (:mod:`.trials`) and reading tuned settings (:mod:`.tuned`, a leaf the runner uses).
"""
