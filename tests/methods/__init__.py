"""Tests of kdlib.methods: one file per method module, plus every method run end to end."""
