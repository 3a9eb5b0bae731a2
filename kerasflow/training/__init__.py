"""Compile, fit, evaluate and explain: the training side of a run."""
