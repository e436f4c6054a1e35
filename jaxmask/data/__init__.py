"""Datasets (tfds builders, SynthFaces) and grain input pipelines."""
