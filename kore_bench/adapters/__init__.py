"""Engine code for adapters that methods build on: calibration covariances (:mod:`.covariance`),
the null-space factorisation and rank rules (:mod:`.nullspace`) and artifacts — plain (adapter +
trained tensors) or with rewritten base weights (:mod:`.artifacts`). Methods in ``methods/`` use
these; nothing here imports a method.
"""
