"""The durable journal: every accepted record is on disk before anyone is told so.

Why SQLite in WAL mode rather than a home-made segment log: a calibration lab's IT can open,
back up and inspect the file with standard tools (`sqlite3 journal.db`), its crash safety is
among the most tested code in existence, a commit of a whole batch is one WAL append plus
one fsync (group commit), and readers (the sinks, `gateway quarantine`) never block the
writer.  A segment log would need our own checksums, torn-write recovery and compaction
for a speed we do not need at a gateway's rates (see `bench/journal`).

One file, `DATA_DIR/journal.db`; each table belongs to one module of this package:

    series       interned tag sets, so a record row is just (seq, series, ts, value);
                 freed once no record refers to them and they are not in use
    records      seq AUTOINCREMENT: never reused, so a cursor can never skip a new record
    cursors      last seq each sink has delivered
    held         series a sink's server refuses as a whole (schema conflict), kept aside
    quarantine   rejected input, with its reason; its own bound (rows, max_size / 8)
    redelivery   keys of MQTT messages already committed, to drop broker redeliveries;
                 their own bound (7 days, max_size / 16)
    runs         a remote run's current state and its transitions (gateway.run)
    control      run commands: the replay store (key, seq of every signed command until an
                 hour past its expiry) and the log of every command (gateway.control)
    schema       the meta table, the schema version, and how to add a table
    store        `Journal`: the group commit (failed commits retried), transactions, the
                 journal's thread
    lock         one process per data_dir (`DATA_DIR/lock`)
    recovery     a damaged or vanished journal found at open: set aside, recovered, reported

A record is deleted only when every configured sink's cursor has passed it.  When the file
reaches `max_size`, the policy `refuse` (default) makes `submit` raise `JournalFull` and
raises the health alarm; nothing already accepted is touched.  `drop_oldest` instead
deletes the oldest undelivered records to make room, counts them as `dropped` and logs it
loudly: for sites that prefer fresh data to complete data, never the default.  Non-data (the
quarantine, the redelivery keys) is bounded on its own within `max_size`, so it can never
fill the journal and stop good input.
"""

from gateway.journal.cursors import Batch
from gateway.journal.quarantine import QuarantineRow
from gateway.journal.redelivery import dedupe_key
from gateway.journal.store import Journal, JournalStats

__all__ = ["Batch", "Journal", "JournalStats", "QuarantineRow", "dedupe_key"]
