"""`json-workflow store migrate --to URL`: one host's SQLite store copied into PostgreSQL for a fleet."""

from __future__ import annotations

import contextlib

from conftest import Service, cli, drop, make_config, write_config
from json_workflow.config import build
from json_workflow.reporting import figures
from json_workflow.run import run_once
from json_workflow.samples import job
from json_workflow.store import SqliteStore, open_store


def fleet(root, url):
    return build({"store": {"url": url}, "instance": "a"}, "test", root=root)


def test_migrate_copies_statistics_history_and_reports_and_the_fleet_goes_on(root, pg_server):
    drop(root, "RANK", "good.json", job("RANK", "CELTRA", 4711))
    drop(root, "LOREAL", "bad.json", b"{broken")
    config = make_config(root)
    run_once(config)
    with contextlib.closing(SqliteStore(config.state)) as store:
        store.mark_report_sent("2026-03-10", 1.0, "mailed to ops")
        before = figures.today(store, 2e9, config.email.zone)
        day = figures.local_day(store.history("good")[0].finished, config.email.zone)
        old = figures.build(store, day, config.email.zone, 2e9, lambda name, claim: False).as_dict()
    url = pg_server.database()
    done = cli("store", "migrate", "--to", url, "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert "files: 2 rows" in done.stdout and "reports: 1 row" in done.stdout
    with contextlib.closing(open_store(fleet(root, url))) as store:
        assert figures.build(store, day, config.email.zone, 2e9, lambda name, claim: False).as_dict() == old
        assert figures.today(store, 2e9, config.email.zone).processed == before.processed
        (record,) = store.history("4711")
        assert record.name == "RANK/good.json" and record.outcome == "archived"
        (failed,) = store.failed_files()
        assert failed.failed_as.startswith(str(root / "JSON_FAILED/LOREAL/"))  # relative in the store, whole here
        assert store.reports_sent() == {"2026-03-10"}
    drop(root, "RANK", "next.json", job("RANK", "CELTRA", 4712))
    run_once(fleet(root, url))
    with contextlib.closing(open_store(fleet(root, url))) as store:
        ids = sorted(r.id for r in store.history("json"))
        assert len(ids) == 3 and len(set(ids)) == 3  # the next file's row follows the copied ones


def test_migrate_is_refused_while_a_service_runs_and_into_a_store_that_holds_statistics(tmp_path, root, pg_server):
    drop(root, "RANK", "good.json", job("RANK", "CELTRA", 1))
    run_once(make_config(root))
    url = pg_server.database()
    service = Service(root, write_config(tmp_path / "service.toml", root)).start()
    try:
        refused = cli("store", "migrate", "--to", url, "--config", str(tmp_path / "service.toml"))
        assert refused.returncode == 1
        assert "is running on" in refused.stderr and "stop it" in refused.stderr
    finally:
        assert service.stop() == 0
    assert cli("store", "migrate", "--to", url, "--root", str(root)).returncode == 0
    again = cli("store", "migrate", "--to", url, "--root", str(root))
    assert again.returncode == 1 and "already holds statistics" in again.stderr
    bad = cli("store", "migrate", "--to", "postgresql://jw:secret@localhost/x", "--root", str(root))
    assert bad.returncode == 2 and "password" in bad.stderr and "secret" not in bad.stderr
