"""Hyper-parameter sweeps over a recipe (Optuna); see :mod:`tuneforge.sweep.study`."""
