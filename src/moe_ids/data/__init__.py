"""Flows in: CSV loading, each extractor's semantics converted into the model's, and the training corpus with
its deterministic split."""
