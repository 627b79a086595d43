"""Training: the one loop, its collector, evaluation, checkpoints, run folders and tracking.

Start or continue a run with :func:`qagent.training.loop.start_training` and
:func:`qagent.training.loop.resume_training`. The package imports nothing by itself, so reading
a run folder (:mod:`qagent.training.runs`) does not load torch.
"""
