"""Certificate numbers: stable for a run, a new revision only when the content changes, and never
two different certificates under one identifier.

The number of a run's certificate is ``[certificate] identifier`` or, without it, the run id.
The register (SQLite, ``[certificate] register_file``, default ``certificates.db`` beside the
pipeline config) keeps every identifier issued with the run it belongs to, the hash of its
content, its issue date and the identifier it replaces:

- The first issue under a number is the number itself (revision 0).
- Computing the run again with the same content (same results, parties, items, references,
  software version: `content_key`, the certificate's canonical XML with the identifier and
  the issue date left out) gives the same identifier **and issue date**: the same
  certificate.xml, byte for byte, so a QR code printed earlier still matches.
- Different content gives the next revision, ``<number>-R1``, ``-R2`` ..., which names the one
  it replaces (the DCC's reportAmendedSubstituted and previousReport, with that one's content
  SHA-256).
- A number belongs to one run: issuing it for another run is refused.
- After the certificate is written its content SHA-256 is recorded (`Register.record`); an
  identifier whose recorded hash differs from a new document's is refused (`RegisterError`):
  that would be a second certificate under one identifier.

Each decision is one ``BEGIN IMMEDIATE`` transaction, so two pipelines computing the same run
at once get different revisions, never the same identifier for different content.
A provisional certificate (a run still recording) takes no number from the register.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from gateway.errors import RemotecalError
from pipelines.certificate.content import Issue, Replaced

__all__ = ["Register", "RegisterEntry", "RegisterError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    identifier  TEXT PRIMARY KEY,
    number      TEXT NOT NULL,
    revision    INTEGER NOT NULL,
    run         TEXT NOT NULL,
    content_key TEXT NOT NULL,
    sha256      TEXT,
    issued      TEXT NOT NULL,
    replaces    TEXT,
    created     TEXT NOT NULL,
    UNIQUE (number, revision)
);
"""


class RegisterError(RemotecalError):
    """The register refuses an issue (another run's number, a second content under one id)."""


@dataclass(frozen=True)
class RegisterEntry:
    identifier: str
    number: str
    revision: int
    run: str
    content_key: str
    sha256: str | None
    issued: date
    replaces: str | None


class Register:
    """The register of issued certificates in one SQLite file (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise RegisterError(f"{path}: cannot open the certificate register: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Register:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise RegisterError(f"{self.path}: cannot lock the certificate register: {exc}") from None
        try:
            yield self._db
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def entries(self, number: str | None = None) -> list[RegisterEntry]:
        """Every identifier issued (under ``number``), by number and revision."""
        q = ("SELECT identifier, number, revision, run, content_key, sha256, issued, replaces "
             "FROM certificates")
        rows = self._db.execute(q + (" WHERE number = ?" if number else "") + " ORDER BY number, revision",
                                (number,) if number else ()).fetchall()
        return [RegisterEntry(r[0], r[1], r[2], r[3], r[4], r[5], date.fromisoformat(r[6]), r[7])
                for r in rows]

    def issue(self, number: str, run: str, content_key: str, *, today: date | None = None) -> Issue:
        """The identifier for a certificate of ``run`` with ``content_key`` (module docstring)."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT identifier, revision, run, content_key, sha256, issued FROM certificates "
                "WHERE number = ? ORDER BY revision DESC", (number,)).fetchall()
            other = next((r[2] for r in rows if r[2] != run), None)
            if other is not None:
                raise RegisterError(
                    f"certificate number {number!r} was issued for run {other!r}, not {run!r} "
                    f"(register {self.path}); give this run its own [certificate] identifier")
            same = next((r for r in rows if r[3] == content_key), None)
            if same is not None:
                previous = next((r for r in rows if r[1] == same[1] - 1), None)
                return Issue(identifier=same[0], number=number, revision=same[1],
                             issued=date.fromisoformat(same[5]),
                             replaces=_replaced(previous))
            latest = rows[0] if rows else None
            revision = 0 if latest is None else latest[1] + 1
            identifier = number if revision == 0 else f"{number}-R{revision}"
            issued = today or datetime.now(UTC).date()
            if latest is not None and latest[4] is None:
                raise RegisterError(
                    f"{latest[0]} was reserved but never written (a run that failed part-way); "
                    f"record it or remove it from {self.path} before issuing {identifier}")
            db.execute(
                "INSERT INTO certificates (identifier, number, revision, run, content_key, issued, replaces, "
                "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (identifier, number, revision, run, content_key, issued.isoformat(),
                 latest[0] if latest else None, datetime.now(UTC).isoformat()))
            return Issue(identifier=identifier, number=number, revision=revision, issued=issued,
                         replaces=_replaced(latest))

    def record(self, identifier: str, sha256: str) -> None:
        """The content SHA-256 of the certificate written under ``identifier``; RegisterError if
        another content was recorded under it before."""
        with self._transaction() as db:
            row = db.execute("SELECT sha256 FROM certificates WHERE identifier = ?", (identifier,)).fetchone()
            if row is None:
                raise RegisterError(f"{identifier} is not in the certificate register {self.path}")
            if row[0] is not None and row[0] != sha256:
                raise RegisterError(
                    f"{identifier} was issued with another content (SHA-256 {row[0][:16]}...); refusing to "
                    "issue a second certificate under the same identifier")
            db.execute("UPDATE certificates SET sha256 = ? WHERE identifier = ?", (sha256, identifier))

    def forget_unwritten(self, identifier: str) -> None:
        """Drop a reservation whose certificate was never written (the run failed after `issue`)."""
        with self._transaction() as db:
            db.execute("DELETE FROM certificates WHERE identifier = ? AND sha256 IS NULL", (identifier,))


def _replaced(row: tuple[object, ...] | None) -> Replaced | None:
    if row is None:
        return None
    identifier, sha = str(row[0]), row[4]
    return Replaced(identifier, str(sha) if sha else "not recorded")
