"""Tests of kdlib.models: one file per module of the model zoo."""
