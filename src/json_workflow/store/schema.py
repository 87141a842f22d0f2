"""The one schema of the store, as a list of versioned migrations.

The version a database has reached is the one row of its `schema_version` table (a table, not
SQLite's PRAGMA user_version: PostgreSQL has no such pragma, and one mechanism, in the same
transaction as the DDL, serves both stores and survives a copy from one into the other). A store
runs the migrations above its version when it opens, in one transaction. Migrations are only ever
appended, never edited: a database in the field has run the old text.
"""

from __future__ import annotations

from typing import NamedTuple


class Migration(NamedTuple):
    version: int
    what: str
    sqlite: tuple[str, ...]  # the statements, in SQLite's dialect
    postgresql: tuple[str, ...] = ()  # the same schema in PostgreSQL's (no rowid, REAL is 4 bytes there)


# Version 1 is the schema json-workflow had before it was versioned, written IF NOT EXISTS (and as it was,
# to the space) so that it adopts a journal.sqlite3 made by that code as it is, and makes what older code lacked.
_BASELINE = [
    # How often a claim's processing began after a crash: a file that stops the process each time is set aside.
    "CREATE TABLE IF NOT EXISTS attempts (claim TEXT PRIMARY KEY, count INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS copies (
        claim TEXT NOT NULL,      -- the claimed file, in the claim area
        temp TEXT NOT NULL,       -- the hidden temporary, in the destination folder (a move: the claim)
        final TEXT NOT NULL,      -- where it is published (for a failed file: its folder)
        kind TEXT NOT NULL,       -- 'copy', 'failed', 'reason' or 'move'
        state TEXT NOT NULL DEFAULT 'planned',
        PRIMARY KEY (claim, temp)
    )""",
    """CREATE TABLE IF NOT EXISTS files (
        id INTEGER PRIMARY KEY,
        received REAL NOT NULL,   -- when it was claimed
        name TEXT NOT NULL,       -- CLIENT/name.json, as the log shows it
        client TEXT,              -- its client folder or ClientCode; NULL when unknown
        source TEXT NOT NULL,     -- STARTUP, REALTIME, PERIODIC, RECOVERY
        inode INTEGER,            -- with name, recognises a waiting file when it is taken again
        claim TEXT,               -- its path in the claim area
        outcome TEXT,             -- NULL while in flight, then archived, failed or pending
        finished REAL,
        seconds REAL,             -- processing time, claim to finish
        category TEXT, studio TEXT, title TEXT,
        stage TEXT, reason TEXT   -- for failed (and pending) files
    )""",
    "CREATE INDEX IF NOT EXISTS files_received ON files (received)",
    "CREATE INDEX IF NOT EXISTS files_finished ON files (finished)",
    "CREATE INDEX IF NOT EXISTS files_open ON files (claim) WHERE outcome IS NULL",
    "CREATE INDEX IF NOT EXISTS files_waiting ON files (name) WHERE outcome = 'pending'",
    """CREATE TABLE IF NOT EXISTS routed (
        file INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        rule TEXT NOT NULL,
        folder TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS routed_file ON routed (file)",
    "CREATE TABLE IF NOT EXISTS batches (at REAL NOT NULL, size INTEGER NOT NULL, seconds REAL NOT NULL)",
    """CREATE TABLE IF NOT EXISTS scans (
        at REAL NOT NULL,
        outcome TEXT NOT NULL,    -- completed, skipped, abandoned
        seconds REAL, found INTEGER, slow INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE TABLE IF NOT EXISTS troubles (at REAL NOT NULL, folder TEXT NOT NULL, error TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, started REAL NOT NULL, stopped REAL, mode TEXT)",
    "CREATE TABLE IF NOT EXISTS reports (day TEXT PRIMARY KEY, sent REAL NOT NULL, delivery TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value)",
]

_HISTORY = [
    "ALTER TABLE files ADD COLUMN job TEXT",  # JobDetails.JobNumber, for the file history's search
    "ALTER TABLE files ADD COLUMN failed_as TEXT",  # the failed file of a failed one, for retry by its row
    "ALTER TABLE files ADD COLUMN retried REAL",  # when that failed file was put back into the hot folder
    "CREATE INDEX files_failed ON files (finished) WHERE outcome = 'failed' AND retried IS NULL",
    # What a running service knows and the statistics do not (its watcher, destinations in trouble, the
    # files it holds), saved every few seconds for `status` and a dashboard run apart from it.
    """CREATE TABLE live (
        instance TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        started REAL NOT NULL,
        beat REAL NOT NULL,       -- when it was saved: the main loop's heartbeat
        state TEXT NOT NULL       -- JSON
    )""",
]

# PostgreSQL's text of versions 1 and 2 (added with the PostgreSQL store; SQLite's is as it was). Its
# tables that are read in insertion order have a `rowid` column, named as SQLite's implicit one so
# that one statement serves both; times are DOUBLE PRECISION (its REAL would round them to minutes).
_PG_BASELINE = [
    "CREATE TABLE attempts (claim TEXT PRIMARY KEY, count INTEGER NOT NULL)",
    """CREATE TABLE copies (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY,
        claim TEXT NOT NULL, temp TEXT NOT NULL, final TEXT NOT NULL, kind TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'planned',
        PRIMARY KEY (claim, temp)
    )""",
    """CREATE TABLE files (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        received DOUBLE PRECISION NOT NULL, name TEXT NOT NULL, client TEXT, source TEXT NOT NULL,
        inode BIGINT, claim TEXT, outcome TEXT, finished DOUBLE PRECISION, seconds DOUBLE PRECISION,
        category TEXT, studio TEXT, title TEXT, stage TEXT, reason TEXT
    )""",
    "CREATE INDEX files_received ON files (received)",
    "CREATE INDEX files_finished ON files (finished)",
    "CREATE INDEX files_open ON files (claim) WHERE outcome IS NULL",
    "CREATE INDEX files_waiting ON files (name) WHERE outcome = 'pending'",
    """CREATE TABLE routed (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY,
        file BIGINT NOT NULL REFERENCES files (id) ON DELETE CASCADE, rule TEXT NOT NULL, folder TEXT NOT NULL
    )""",
    "CREATE INDEX routed_file ON routed (file)",
    "CREATE TABLE batches (at DOUBLE PRECISION NOT NULL, size INTEGER NOT NULL, seconds DOUBLE PRECISION NOT NULL)",
    """CREATE TABLE scans (
        at DOUBLE PRECISION NOT NULL, outcome TEXT NOT NULL, seconds DOUBLE PRECISION, found INTEGER,
        slow INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE TABLE troubles (at DOUBLE PRECISION NOT NULL, folder TEXT NOT NULL, error TEXT NOT NULL)",
    """CREATE TABLE runs (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        started DOUBLE PRECISION NOT NULL, stopped DOUBLE PRECISION, mode TEXT
    )""",
    "CREATE TABLE reports (day TEXT PRIMARY KEY, sent DOUBLE PRECISION NOT NULL, delivery TEXT NOT NULL)",
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value DOUBLE PRECISION)",
]

_PG_HISTORY = [
    "ALTER TABLE files ADD COLUMN job TEXT",
    "ALTER TABLE files ADD COLUMN failed_as TEXT",
    "ALTER TABLE files ADD COLUMN retried DOUBLE PRECISION",
    "CREATE INDEX files_failed ON files (finished) WHERE outcome = 'failed' AND retried IS NULL",
    """CREATE TABLE live (
        instance TEXT PRIMARY KEY, pid INTEGER NOT NULL, started DOUBLE PRECISION NOT NULL,
        beat DOUBLE PRECISION NOT NULL, state TEXT NOT NULL
    )""",
]


def _fleet(time: str) -> list[str]:
    return [
        "ALTER TABLE files ADD COLUMN instance TEXT",  # the instance that processed it
        "ALTER TABLE runs ADD COLUMN instance TEXT",
        # Each running instance's lease (store.fleet): renewed every few seconds, taken over when stale.
        f"""CREATE TABLE instances (
            name TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started {time} NOT NULL,
            beat {time} NOT NULL,             -- its last renewal, by the store's clock
            epoch INTEGER NOT NULL DEFAULT 0, -- raised by each takeover: the fencing token
            taken_by TEXT, taken {time}       -- the last takeover of its claim area
        )""",
        # Who is sending a report or an alert round now: one sender in the fleet, another if it dies.
        f"CREATE TABLE sends (what TEXT PRIMARY KEY, instance TEXT NOT NULL, started {time} NOT NULL)",
    ]


# What `replay --apply` delivered, or is delivering: each copy recorded before it is written and marked
# published once it is in place, so that a copy a consumer has taken since is never delivered again. Never
# pruned: it is what tells a rerun, however much later, that a copy was made. The file history's search by
# name (replay consults what the pipeline delivered) gets an index.
_REPLAYED = [
    """CREATE TABLE replayed (
        source TEXT NOT NULL,     -- the archived file
        digest TEXT NOT NULL,     -- SHA-256 of its bytes: which version of it
        final TEXT NOT NULL,      -- where the copy is published
        temp TEXT NOT NULL,       -- its hidden temporary while it is written
        rules TEXT NOT NULL,      -- the rules that add it, joined by ' + '
        state TEXT NOT NULL DEFAULT 'planned',  -- planned, staged (flushed), published
        PRIMARY KEY (source, digest, final)
    )""",
    "CREATE INDEX files_name ON files (name)",
    "ALTER TABLE instances ADD COLUMN report TEXT",  # its report settings (JSON): who can mail the fleet's report
]


# Copies sent to a URL (an http(s) endpoint, an SFTP server), each under its idempotency key (one version of
# one file to one rule) once the endpoint acknowledged it: a file sent again, after a crash or while it
# waited for another destination, skips what was acknowledged. Pruned with the statistics.
def _sent(time: str) -> list[str]:
    return [
        f"""CREATE TABLE sent (
            key TEXT PRIMARY KEY,
            file BIGINT,              -- its row in files, when known
            rule TEXT NOT NULL,
            url TEXT NOT NULL,        -- as shown: no query values
            status INTEGER,           -- the HTTP status; NULL for SFTP
            at {time} NOT NULL        -- when it was acknowledged
        )""",
        "CREATE INDEX sent_file ON sent (file)",
        "CREATE INDEX sent_at ON sent (at)",
    ]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the journal and the statistics", tuple(_BASELINE), tuple(_PG_BASELINE)),
    Migration(2, "the file history, retry by row and the live state", tuple(_HISTORY), tuple(_PG_HISTORY)),
    Migration(3, "several instances: leases, one sender", tuple(_fleet("REAL")), tuple(_fleet("DOUBLE PRECISION"))),
    Migration(4, "replay --apply's journal; report settings by instance", tuple(_REPLAYED), tuple(_REPLAYED)),
    Migration(5, "copies sent to URLs", tuple(_sent("REAL")), tuple(_sent("DOUBLE PRECISION"))),
)
VERSION = MIGRATIONS[-1].version
