"""Tests of kdlib.data: one file per module of the data package."""
