"""The ground floor every other package stands on: configuration (``params``), the stage CLI
(``cli``), the canonical data contract (``schema``), the data version (``data_version``), the one
event and item log with its two backends (``eventlog``: JSONL files; ``streamlog``: Redis Streams),
and the compact metrics files DVC compares (``tracking``).

Imports go one way: ``core`` imports no other pulse package; ``features``, ``models``,
``serving`` and ``flows`` import ``core``. No torch here.
"""
