"""Evaluating trained runs: loading a run's checkpoint and config, shared across studies."""
