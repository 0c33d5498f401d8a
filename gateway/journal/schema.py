"""The journal file's schema: which tables there are, and its version.

Each part of the journal (`series`, `records`, `cursors`, `quarantine`, `redelivery`) owns its
table(s) and declares them in its `DDL`; `SCHEMA` is all of them, run at every open with
`CREATE ... IF NOT EXISTS`.

Adding a table (a run's state, say) is a module with its `DDL` and the methods that use it,
and one more entry in `gateway.journal.store.PARTS`: an existing journal gains the table at
its next open, no version change needed.  Changing a table that exists (a column, a key)
raises `SCHEMA_VERSION` and needs a migration in `check_version`.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from gateway.errors import JournalError

__all__ = ["META_DDL", "SCHEMA_VERSION", "check_version", "journal_id", "meta_get", "meta_set"]

META_DDL = "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
SCHEMA_VERSION = "1"


def check_version(db: sqlite3.Connection, path: Path) -> None:
    """Stamp a new journal with `SCHEMA_VERSION`; refuse one written by another version."""
    version = meta_get(db, "schema")
    if version is None:
        meta_set(db, "schema", SCHEMA_VERSION)
    elif version != SCHEMA_VERSION:
        raise JournalError(f"{path}: journal schema {version} is not {SCHEMA_VERSION}")


def meta_get(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def meta_set(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, value))


def journal_id(db: sqlite3.Connection) -> str:
    """This journal file's identity, made at its first open (the marker names it)."""
    found = meta_get(db, "id")
    if found is None:
        found = uuid.uuid4().hex
        meta_set(db, "id", found)
    return found
