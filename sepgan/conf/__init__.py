"""Hydra configs of `python -m sepgan.train`, inside the package so an installed wheel can train."""
