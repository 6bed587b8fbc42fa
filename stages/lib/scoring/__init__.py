"""Scoring customers: the one path from a batch of rows to probabilities, decisions, ranks and reasons;
model files checked against dvc.lock."""
