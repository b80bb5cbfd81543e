"""The embedded backend: one SQLite file in WAL mode, written by one process of its own.

`store.py` is the port's adapter; `process.py` runs `writer.py`, the writing connection
in a process of its own, fed batches built by `writes.py`; `reads.py` names the read
queries; `known.py` is the memory of committed jobs that lets a batch be planned without
a read; `schema.py` migrates the file; `lock.py` keeps to one server per file.
"""

from jobtrail.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
