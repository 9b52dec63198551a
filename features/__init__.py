"""Data side of pulse: params, canonical schema, ingest, pure feature functions and the Feast repo.

Nothing in this package imports torch: it stays light enough for feature jobs and tests.
"""
