"""Evaluation: the paper's metrics, the evaluation pipeline and its pictures."""
