"""Prefect flows: thin wrappers that run the stage functions, version data with DVC and record artifacts.

Only this package imports prefect.
"""
