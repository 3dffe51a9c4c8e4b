"""Triton: the model calls, the replicas and their targets, the model catalog, repair."""
