"""The store's reads (SQLite): a day's rows for its figures, and the reporter's reports sent and alert state."""

from __future__ import annotations

from json_workflow.names import from_store
from json_workflow.store.rows import (
    AlertState,
    ClientCount,
    DayRows,
    DaySummary,
    Failure,
    FileRecord,
    InstanceCount,
    LastScan,
    LiveRow,
    Member,
    ReceivedFile,
    SentReport,
    SourceCount,
    TroubleCount,
)
from json_workflow.store.sql import Db

# Files processed (archived or failed) within a window; the two parameters are its start and end.
DONE = "finished >= ? AND finished < ? AND outcome IN ('archived', 'failed')"


def day_rows(db: Db, start: float, end: float, highlight: str, last_errors: int) -> DayRows:
    window = (start, end)
    processed, archived, errors, average = db.execute(
        f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN outcome = 'archived' THEN 1 ELSE 0 END), 0),"
        f" COALESCE(SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END), 0),"
        f" COALESCE(AVG(seconds), 0) FROM files WHERE {DONE}",
        window,
    ).fetchone()
    batches, average_batch = db.execute(
        "SELECT COUNT(*), COALESCE(AVG(CAST(size AS DOUBLE PRECISION)), 0) FROM batches WHERE at >= ? AND at < ?",
        window,
    ).fetchone()
    started = db.execute(
        "SELECT started FROM runs WHERE mode = 'service' AND stopped IS NULL ORDER BY started DESC LIMIT 1"
    ).fetchone()
    return DayRows(
        processed=processed,
        archived=archived,
        errors=errors,
        average_seconds=average,
        sources=by_source(db, start, end),
        batches=batches,
        average_batch=average_batch,
        scans=dict(
            db.execute(
                "SELECT outcome, COUNT(*) FROM scans WHERE at >= ? AND at < ? GROUP BY outcome", window
            ).fetchall()
        ),
        scans_slow=db.execute("SELECT COUNT(*) FROM scans WHERE at >= ? AND at < ? AND slow = 1", window).fetchone()[0],
        clients=clients(db, start, end, highlight),
        categories=db.execute(
            "SELECT COALESCE(f.client, '_unknown'), f.category, COUNT(*)"
            f" FROM files f WHERE {DONE} AND f.category IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2",
            window,
        ).fetchall(),
        destinations=db.execute(
            f"SELECT folder, COUNT(DISTINCT file) AS n FROM routed JOIN files ON files.id = routed.file"
            f" WHERE {DONE} GROUP BY folder ORDER BY n DESC, folder",
            window,
        ).fetchall(),
        hours=dict(
            db.execute(
                f"SELECT CAST(FLOOR((finished - ?) / 3600) AS INTEGER), COUNT(*) FROM files WHERE {DONE} GROUP BY 1",
                (start, *window),
            ).fetchall()
        ),
        last_errors=[
            Failure(*row)
            for row in db.execute(
                "SELECT finished, client, name, stage, reason FROM files WHERE outcome = 'failed'"
                " AND finished >= ? AND finished < ? ORDER BY finished DESC, id DESC LIMIT ?",
                (*window, last_errors),
            )
        ],
        received=[
            ReceivedFile(name, claim if claim is None else from_store(claim), outcome)
            for name, claim, outcome in db.execute(
                "SELECT name, claim, outcome FROM files WHERE received >= ? AND received < ? ORDER BY received", window
            )
        ],
        service_started=started[0] if started else None,
        instances=instances(db, start, end),
    )


def day_summary(db: Db, start: float, end: float, highlight: str) -> DaySummary:
    processed, archived, errors = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN outcome = 'archived' THEN 1 ELSE 0 END), 0),"
        f" COALESCE(SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END), 0)"
        f" FROM files WHERE {DONE}",
        (start, end),
    ).fetchone()
    return DaySummary(processed, archived, errors, clients(db, start, end, highlight), instances(db, start, end))


def instances(db: Db, start: float, end: float) -> list[InstanceCount]:
    return [
        InstanceCount(*row)
        for row in db.execute(
            "SELECT COALESCE(instance, '-'), COUNT(*), SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END)"
            f" FROM files WHERE {DONE} GROUP BY 1 ORDER BY 1",
            (start, end),
        )
    ]


def members(db: Db) -> list[Member]:
    return [
        Member(*row)
        for row in db.execute(
            "SELECT name, host, pid, started, beat, epoch, taken_by, taken, report FROM instances ORDER BY name"
        )
    ]


def clients(db: Db, start: float, end: float, highlight: str) -> list[ClientCount]:
    return [
        ClientCount(*row)
        for row in db.execute(
            "SELECT COALESCE(f.client, '_unknown') AS c, COUNT(*),"
            " SUM(CASE WHEN f.outcome = 'failed' THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN EXISTS (SELECT 1 FROM routed r WHERE r.file = f.id) THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN ? <> '' AND EXISTS (SELECT 1 FROM routed r WHERE r.file = f.id"
            " AND lower(r.rule) LIKE lower(?) ESCAPE '\\') THEN 1 ELSE 0 END)"
            f" FROM files f WHERE {DONE} GROUP BY c ORDER BY COUNT(*) DESC, c",
            (highlight, _like(highlight), start, end),
        )
    ]


def by_source(db: Db, start: float, end: float) -> list[SourceCount]:
    return [
        SourceCount(*row)
        for row in db.execute(
            f"SELECT source, COUNT(*), SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END) FROM files WHERE {DONE}"
            " GROUP BY source ORDER BY source",
            (start, end),
        )
    ]


def first_run(db: Db) -> float | None:
    return db.execute("SELECT MIN(started) FROM runs").fetchone()[0]


def reports_sent(db: Db) -> set[str]:
    return {row[0] for row in db.execute("SELECT day FROM reports")}


def mark_report_sent(db: Db, day: str, now: float, delivery: str) -> None:
    db.execute(
        "INSERT INTO reports (day, sent, delivery) VALUES (?, ?, ?) ON CONFLICT (day) DO NOTHING", (day, now, delivery)
    )
    db.execute("DELETE FROM sends WHERE what = ?", (f"report {day}",))  # sent: nobody is sending it any more


def release_send(db: Db, what: str, instance: str) -> None:
    db.execute("DELETE FROM sends WHERE what = ? AND instance = ?", (what, instance))


def take_send(db: Db, what: str, instance: str, now: float, lease: float) -> bool:
    """Become the one sender of `what` unless a live instance is (its lease renewed within `lease`)."""
    return (
        db.execute(
            "INSERT INTO sends (what, instance, started) VALUES (?, ?, ?) ON CONFLICT (what) DO UPDATE"
            " SET instance = excluded.instance, started = excluded.started WHERE sends.instance = excluded.instance"
            " OR NOT EXISTS (SELECT 1 FROM instances i WHERE i.name = sends.instance AND i.beat >= ?) RETURNING 1",
            (what, instance, now, now - lease),
        ).fetchone()
        is not None
    )


def alert_state(db: Db) -> AlertState | None:
    setting = dict(db.execute("SELECT key, value FROM settings WHERE key LIKE 'alert_%'").fetchall())
    if "alert_since" not in setting:
        return None
    return AlertState(setting["alert_since"], setting["alert_sent"])


def save_alert_state(db: Db, state: AlertState) -> None:
    db.executemany(
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [("alert_since", state.since), ("alert_sent", state.sent)],
    )
    db.execute("DELETE FROM sends WHERE what = 'alert'")


def failures(db: Db, since: float, until: float) -> list[Failure]:
    return [
        Failure(*row)
        for row in db.execute(
            "SELECT finished, client, name, stage, reason FROM files WHERE outcome = 'failed' AND finished > ?"
            " AND finished <= ? ORDER BY finished",
            (since, until),
        )
    ]


def trouble_counts(db: Db, since: float, until: float) -> list[TroubleCount]:
    return [
        TroubleCount(*row)
        for row in db.execute(
            "SELECT folder, COUNT(*), MIN(at), MAX(error) FROM troubles WHERE at > ? AND at <= ? GROUP BY folder",
            (since, until),
        )
    ]


_RECORD = (
    "SELECT id, received, name, client, source, outcome, finished, seconds, category, job, stage, reason,"
    " failed_as, retried FROM files"
)


def _records(db: Db, where: str, parameters: tuple[object, ...]) -> list[FileRecord]:
    rows = db.execute(f"{_RECORD} WHERE {where}", parameters).fetchall()
    routed: dict[int, list[tuple[str, str]]] = {}
    sent: dict[int, list[tuple[str, str, int | None, float]]] = {}
    ids = [row[0] for row in rows]
    for start in range(0, len(ids), 500):  # SQLite's limit on parameters is far above; PostgreSQL's too
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for file, rule, folder in db.execute(
            f"SELECT file, rule, folder FROM routed WHERE file IN ({marks}) ORDER BY rowid", chunk
        ):
            routed.setdefault(file, []).append((rule, folder))
        for file, *acknowledged in db.execute(
            f"SELECT file, rule, url, status, at FROM sent WHERE file IN ({marks}) ORDER BY at", chunk
        ):
            sent.setdefault(file, []).append(tuple(acknowledged))
    return [
        FileRecord._make(
            (
                *row[:12],
                row[12] if row[12] is None else from_store(row[12]),
                row[13],
                routed.get(row[0], []),
                sent.get(row[0], []),
            )
        )  # fmt: skip
        for row in rows
    ]


def _like(text: str) -> str:
    """A LIKE pattern for names containing `text`, its wildcards taken literally (ESCAPE '\\')."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def history(db: Db, text: str, limit: int) -> list[FileRecord]:
    pattern = _like(text)
    return _records(
        db,
        "lower(name) LIKE lower(?) ESCAPE '\\' OR lower(job) LIKE lower(?) ESCAPE '\\'"
        " ORDER BY received DESC, id DESC LIMIT ?",
        (pattern, pattern, limit),
    )


def file_record(db: Db, row: int) -> FileRecord | None:
    found = _records(db, "id = ?", (row,))
    return found[0] if found else None


def receptions(db: Db, name: str) -> list[FileRecord]:
    return _records(db, "name = ? ORDER BY received DESC, id DESC", (name,))


def failed_files(db: Db, limit: int) -> list[FileRecord]:
    return _records(
        db,
        "outcome = 'failed' AND retried IS NULL AND failed_as IS NOT NULL ORDER BY finished DESC, id DESC LIMIT ?",
        (limit,),
    )


def copy_totals(db: Db) -> list[tuple[str, int]]:
    return db.execute("SELECT rule, COUNT(*) FROM routed GROUP BY rule").fetchall()


def outcome_totals(db: Db) -> list[tuple[str | None, str, int]]:
    return db.execute(
        "SELECT client, outcome, COUNT(*) FROM files WHERE outcome IN ('archived', 'failed', 'pending', 'superseded')"
        " GROUP BY client, outcome"
    ).fetchall()


def last_scan(db: Db) -> LastScan | None:
    row = db.execute("SELECT at, outcome, seconds, found FROM scans ORDER BY at DESC LIMIT 1").fetchone()
    return None if row is None else LastScan(*row)


def last_report(db: Db) -> SentReport | None:
    row = db.execute("SELECT day, sent FROM reports ORDER BY sent DESC LIMIT 1").fetchone()
    return None if row is None else SentReport(*row)


def live(db: Db) -> list[LiveRow]:
    return [
        LiveRow(*row) for row in db.execute("SELECT instance, pid, started, beat, state FROM live ORDER BY instance")
    ]
