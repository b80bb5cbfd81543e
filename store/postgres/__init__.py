"""The PostgreSQL backend: one database shared by any number of jobtrail replicas.

`store.py` is the port's adapter; `writes.py` the log's transaction (one transaction at a
time numbers its events, so the log has one order); `reads.py` names the read
queries; `schema.py` migrates under a lock (replicas may start together); `listen.py`
hears the other replicas (LISTEN/NOTIFY, with polling as the backstop).
"""

from jobtrail.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
