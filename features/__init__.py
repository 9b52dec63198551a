"""The data stages of pulse: ingest (source adapters, validation, quarantine), pure feature
functions, the Feast repo and its materialization, and the online store the service writes.

Configuration, the stage CLI, the canonical schema and the event/item log live one floor down,
in ``core``. Nothing in this package imports torch: it stays light enough for feature jobs and tests.
"""
