"""Makes journal-56c39ce.sqlite3 (and its expected figures) with the code of commit 56c39ce, before the store seam.

Run against that commit's sources, never the current ones:
    git archive 56c39ce src | tar -x -C /tmp/old && PYTHONPATH=/tmp/old/src python tests/data/journal-56c39ce.py
It writes the database and `journal-56c39ce.json` (the figures that code computed from it) beside itself.
"""

import datetime
import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

from json_workflow.config import build
from json_workflow.delivery.pipeline import run_once
from json_workflow.delivery.stages import Delivery
from json_workflow.intake.scan import Candidate
from json_workflow.reporting import figures
from json_workflow.reporting.reporter import Reporter
from json_workflow.samples import job
from json_workflow.store import stats
from json_workflow.store.journal import Journal

HERE = Path(__file__).parent
UTC = ZoneInfo("UTC")
NOON = datetime.datetime(2026, 3, 10, 14, 30, tzinfo=UTC).timestamp()  # the day: 2026-03-10 (UTC)
ROOT = "/srv/jw-56c39ce"  # paths in the database; nothing is read there


def drop(root: Path, folder: str, name: str | bytes, data: bytes) -> None:
    (root / "JSON" / folder).mkdir(parents=True, exist_ok=True)
    target = os.path.join(os.fsencode(root / "JSON" / folder), name if isinstance(name, bytes) else name.encode())
    Path(os.fsdecode(target)).write_bytes(data)


def _rooted(value, root: Path):
    if isinstance(value, bytes):
        return value.replace(os.fsencode(root), ROOT.encode())
    return value.replace(str(root), ROOT) if isinstance(value, str) else value


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="jw-56c39ce-")) / "root"
    (root / "JSON").mkdir(parents=True)
    config = build({}, "generator", root=root)
    drop(root, "RANK", "5903771.json", job("RANK", "CELTRA", 1, title="Spring <launch>"))
    drop(root, "RANK", b"caf\xe9.json", job("RANK", "PRODUCTION", 2))  # a Latin-1 name: its claim is a BLOB
    drop(root, "LOREAL", "campaign_001.json", job("LOREAL", "CAMPAIGN", 3))
    drop(root, "BISSELL", "order_5555.json", job("BISSELL", "ORDER", 4))
    drop(root, "OLIVER", "broken.json", b'{"JobSpecification": ')
    (root / "JSON/top.json").write_bytes(job("OLIVER", "CELTRA", 5))
    (root / "SYNC/MAKE").mkdir(parents=True)
    (root / "SYNC/MAKE/Monday RB").write_text("a file where the folder should be")  # its file waits
    drop(root, "RECKITTBENCKISER", "rb_1.json", job("RECKITTBENCKISER", "SOCIAL", 6))
    print(run_once(config, clock=lambda: NOON).line())
    drop(root, "RANK", "late.json", job("RANK", "PRODUCTION", 7))
    drop(root, "LOREAL", "empty.json", b"")
    print(run_once(config, clock=lambda: NOON + 3600).line())

    journal = Journal(config.state)
    journal.record(lambda db: stats.scan(db, "completed", NOON + 60, 0.25, 3))
    journal.record(lambda db: stats.scan(db, "completed", NOON + 120, 2.5, 0, slow=True))
    journal.record(lambda db: stats.scan(db, "skipped", NOON + 180))
    # A crash in the middle of a batch: its copies planned, its row open, its restart counted.
    claim = os.fsdecode(os.fsencode(root / "JSON/.processing/RANK") + b"/00000000000000000042_ghost\xff.json")
    ghost = Delivery(Candidate(claim, "RANK", name=os.path.basename(claim)[21:], origin=claim), source="REALTIME")
    archive = root / "JSON_STORE/RANK"
    journal.plan(
        [(claim, str(archive / ".ghost.json.1-1.jwtmp"), str(archive / "ghost.json"), "copy")],
        also=lambda db: stats.received(db, [ghost], NOON + 7200),
    )
    journal.restart(claim)
    journal.plan(
        [(claim, str(archive / ".ghost.json.1-2.jwtmp"), str(archive / "ghost.json"), "copy")],
        also=lambda db: stats.received(db, [], NOON + 7200),
    )
    with journal.transaction() as db:  # a service that was killed: its run never stopped
        stats.run_started(db, "service", NOON + 7000)
    journal.close()

    # Alert state (email on; the SMTP port is closed, so nothing is sent), then the day's report (email off).
    os.environ["JW_GEN_PASSWORD"] = "unused"
    mailing = build(
        {
            "email": {
                "enabled": True,
                "smtp_host": "127.0.0.1",
                "smtp_port": 9,
                "sender": "a@example.com",
                "recipients": ["b@example.com"],
                "password_env": "JW_GEN_PASSWORD",
            }
        },
        "generator",
        root=root,
    )
    r = Reporter(mailing)
    r.tick(NOON + 7300)
    r.close()
    r = Reporter(config)
    r.tick(NOON + 86400)
    r.close()

    with sqlite3.connect(config.state / "journal.sqlite3") as db:  # every path as if the root were ROOT
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]
        for table in tables:
            columns = [c[1] for c in db.execute(f"PRAGMA table_info({table})")]
            for rowid, *values in db.execute(f"SELECT rowid, * FROM {table}").fetchall():
                moved = [_rooted(v, root) for v in values]
                if moved != values:
                    sets = ", ".join(f"{c} = ?" for c in columns)
                    db.execute(f"UPDATE {table} SET {sets} WHERE rowid = ?", (*moved, rowid))
    db.close()
    target = HERE / "journal-56c39ce.sqlite3"
    with sqlite3.connect(config.state / "journal.sqlite3") as db:
        fig = figures.build(db, datetime.date(2026, 3, 10), UTC, NOON + 86400, lambda n, c: False, "Celtra")
        line = figures.stats_line(db, NOON + 7200, UTC)
        db.execute("VACUUM")
    db.close()
    shutil.copyfile(config.state / "journal.sqlite3", target)
    (HERE / "journal-56c39ce.json").write_text(
        json.dumps({"figures": fig.as_dict(), "stats_line": line}, indent=1) + "\n"
    )
    shutil.rmtree(root.parent)


if __name__ == "__main__":
    main()
