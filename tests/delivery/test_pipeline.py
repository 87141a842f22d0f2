"""delivery/pipeline.py on real files: batches through every stage, by run_once or by a Pipeline driven by hand.

Components:
1. the routing matrix: each row, the whole matrix in one run (both flush modes), a file of the same name
   at a destination replaced, a UTF-8 BOM kept
2. bad inputs: each kind reaches the failed folder with its stage and reason; unsafe client codes, files
   over max_file_bytes and symlinks create nothing outside the configured folders
3. a backlog: fifty good and five bad files in one run
4. Pipeline.submit and drain: a waiting file superseded by a newer one is set aside, not lost; batches in
   flight are finished by drain and keep no frames
5. flushes: a full destination holds up only its own files; a long-named bad file alone is flushed and
   forgotten; a flush that fails leaves every file waiting, and the next run delivers it

Elsewhere: run-level behaviour in tests/test_run.py; the stages (archive, temporaries, modes) in
test_stages.py; failed names in test_failed.py; destinations in trouble in test_folders.py.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import pytest

from conftest import (
    CELTRA,
    FIXED_STAMP,
    assert_clean,
    drop,
    expected_places,
    failed_entries,
    files,
    make_config,
    places_of,
    read_reason,
    run,
)
from json_workflow.config import build
from json_workflow.samples import backlog, job
from json_workflow.store import SqliteStore

# --- 1. the routing matrix ------------------------------------------------------------------------

MATRIX = [
    # (client folder, ClientCode, JobCategory, places relative to root)
    ("RANK", "RANK", "PRODUCTION", {"JSON_STORE/RANK", "SYNC/MAKE/Monday Rank"}),
    ("RECKITTBENCKISER", "RECKITTBENCKISER", "SOCIAL", {"JSON_STORE/RECKITTBENCKISER", "SYNC/MAKE/Monday RB"}),
    ("BISSELL", "BISSELL", "ORDER", {"JSON_STORE/BISSELL", "CLIENT-STORES/BISSELL-WRIKE/IN"}),
    ("LOREAL", "LOREAL", "CAMPAIGN", {"JSON_STORE/LOREAL", "CLIENT-STORES/LOREAL/IN"}),
    ("CELTRA", "CELTRA", "DIGITAL", {"JSON_STORE/CELTRA", CELTRA}),
    ("CELTRA", "CELTRA", "CELTRA", {"JSON_STORE/CELTRA", CELTRA}),
    ("CIBC", "CIBC", "CELTRA", {"JSON_STORE/CIBC", CELTRA}),
    ("OLIVER", "OLIVER", "CELTRA", {"JSON_STORE/OLIVER", CELTRA}),
    ("ADIDAS", "ADIDAS", "CELTRA", {"JSON_STORE/ADIDAS", CELTRA}),
    ("PAYPAL", "PAYPAL", "CELTRA", {"JSON_STORE/PAYPAL", CELTRA}),
    ("RECKITTBENCKISER", "RECKITTBENCKISER", "CELTRA", {"JSON_STORE/RECKITTBENCKISER", "SYNC/MAKE/Monday RB", CELTRA}),
    ("BAYER", "BAYER", "CELTRA", {"JSON_STORE/BAYER", CELTRA}),
    ("3M", "3M", "CELTRA", {"JSON_STORE/3M", CELTRA}),
    ("RANK", "RANK", "CELTRA", {"JSON_STORE/RANK", "SYNC/MAKE/Monday Rank", CELTRA}),
    ("RANK", "RANK", "celtra", {"JSON_STORE/RANK", "SYNC/MAKE/Monday Rank", CELTRA}),
    ("OLIVER", "oliver", "Celtra", {"JSON_STORE/OLIVER", CELTRA}),
    ("OLIVER", "OLIVER", "PRODUCTION", {"JSON_STORE/OLIVER"}),
    ("ADIDAS", "ADIDAS", "PRODUCTION", {"JSON_STORE/ADIDAS"}),
    ("BISSELL", "BISSELL", "CELTRA", {"JSON_STORE/BISSELL", "CLIENT-STORES/BISSELL-WRIKE/IN"}),
    ("ACME", "ACME", "CELTRA", {"JSON_STORE/ACME"}),
    ("ACME", "ACME", "PRODUCTION", {"JSON_STORE/ACME"}),
    (None, "LOREAL", "CAMPAIGN", {"JSON_STORE/LOREAL", "CLIENT-STORES/LOREAL/IN"}),
    (None, "PAYPAL", "CELTRA", {"JSON_STORE/PAYPAL", CELTRA}),
]


def _row_id(row):
    folder, client, category, places = row
    return f"{folder or 'top'}-{client}-{category}-{len(places)}places"


@pytest.mark.parametrize("row", MATRIX, ids=_row_id)
def test_routing_matrix_row(row, config, root):
    folder, client, category, places = row
    data = job(client, category, 42)
    original = drop(root, folder, "job_42.json", data)
    summary = run(config)
    assert (summary.archived, summary.failed, summary.pending) == (1, 0, 0)
    assert summary.routed == (1 if len(places) > 1 else 0)
    assert places_of(root, "job_42.json") == places
    for place in places:
        assert (root / place / "job_42.json").read_bytes() == data
    assert not original.exists()
    assert not (root / "JSON_FAILED").exists()
    assert_clean(root)


def test_rank_celtra_job_ends_in_exactly_three_places(config, root):
    data = job("RANK", "CELTRA", 5903772)
    drop(root, "RANK", "rank_celtra.json", data)
    run(config)
    found = [rel for rel in files(root) if not rel.startswith("JSON_PARSER_STATE")]
    assert sorted(found) == sorted(
        [
            "JSON_STORE/RANK/rank_celtra.json",
            "SYNC/MAKE/Monday Rank/rank_celtra.json",
            f"{CELTRA}/rank_celtra.json",
        ]
    )
    assert {files(root)[rel] for rel in found} == {data}


@pytest.mark.parametrize("flush", ["file", "filesystem"])
def test_whole_matrix_in_one_run(flush, root):
    config = make_config(root, flush=flush)
    expected = {}
    for n, (folder, client, category, places) in enumerate(MATRIX):
        name = f"m{n}.json"
        data = job(client, category, n)
        drop(root, folder, name, data)
        expected[name] = (data, places)
    summary = run(config)
    assert (summary.archived, summary.failed, summary.pending) == (len(MATRIX), 0, 0)
    assert summary.routed == sum(len(p) > 1 for _, _, _, p in MATRIX)
    for name, (data, places) in expected.items():
        assert places_of(root, name) == places, name
        for place in places:
            assert (root / place / name).read_bytes() == data
    assert [rel for rel in files(root / "JSON")] == []
    assert_clean(root)


def test_existing_file_of_same_name_at_destination_is_replaced(config, root):
    (root / "JSON_STORE/RANK").mkdir(parents=True)
    (root / "JSON_STORE/RANK/x.json").write_bytes(b"old")
    data = job("RANK", "X", 2)
    drop(root, "RANK", "x.json", data)
    run(config)
    assert (root / "JSON_STORE/RANK/x.json").read_bytes() == data
    assert (root / "SYNC/MAKE/Monday Rank/x.json").read_bytes() == data


def test_utf8_bom_job_is_delivered_with_its_bom(config, root):
    data = b"\xef\xbb\xbf" + job("RANK", "X", 1)
    drop(root, "RANK", "bom.json", data)
    summary = run(config)
    assert (summary.archived, summary.failed) == (1, 0)
    assert (root / "JSON_STORE/RANK/bom.json").read_bytes() == data
    assert (root / "SYNC/MAKE/Monday Rank/bom.json").read_bytes() == data


# --- 2. bad inputs --------------------------------------------------------------------------------


def details(d) -> bytes:
    import json

    return json.dumps({"JobSpecification": {"JobDetails": d}}).encode()


BAD = [
    # (id, client folder, bytes, stage, words in the reason)
    ("invalid-json", "RANK", b'{"JobSpecification": {"JobDetails": ', "parse", "invalid JSON"),
    ("empty", "RANK", b"", "parse", "empty file"),
    ("not-utf8", "RANK", job("RANK", "X", 1).replace(b"campaign", b"campa\xe9gn"), "parse", "not UTF-8"),
    ("top-level-array", "RANK", b"[1, 2, 3]", "validate", "top level is a JSON array"),
    ("no-jobdetails", "RANK", b'{"JobSpecification": {}}', "validate", "no JobSpecification.JobDetails object"),
    ("clientcode-missing", "RANK", details({"JobCategory": "X"}), "validate", "ClientCode is missing"),
    (
        "clientcode-number",
        "RANK",
        details({"ClientCode": 7, "JobCategory": "X"}),
        "validate",
        "ClientCode must be a non-empty string",
    ),
    (
        "clientcode-empty",
        "RANK",
        details({"ClientCode": "", "JobCategory": "X"}),
        "validate",
        "ClientCode must be a non-empty string",
    ),
    ("jobcategory-missing", "RANK", details({"ClientCode": "RANK"}), "validate", "JobCategory is missing"),
    (
        "jobcategory-empty",
        "RANK",
        details({"ClientCode": "RANK", "JobCategory": " "}),
        "validate",
        "JobCategory must be a non-empty string",
    ),
    (
        "jobcategory-list",
        "RANK",
        details({"ClientCode": "RANK", "JobCategory": ["CELTRA"]}),
        "validate",
        "JobCategory must be a non-empty string",
    ),
    ("wrong-client-folder", "LOREAL", job("RANK", "PRODUCTION", 4), "validate", "does not match its client folder"),
    ("unsafe-dotdot-x", "RANK", job("../x", "X", 1), "validate", "not a safe folder name"),
    ("unsafe-a/b", "RANK", job("a/b", "X", 1), "validate", "not a safe folder name"),
    ("unsafe-abs", "RANK", job("/abs", "X", 1), "validate", "not a safe folder name"),
    ("unsafe-dotdot", "RANK", job("..", "X", 1), "validate", "not a safe folder name"),
    ("top-unsafe-dotdot-x", None, job("../x", "X", 1), "validate", "not a safe folder name"),
    ("top-unsafe-a/b", None, job("a/b", "X", 1), "validate", "not a safe folder name"),
    ("top-unsafe-abs", None, job("/abs", "X", 1), "validate", "not a safe folder name"),
    ("top-unsafe-dotdot", None, job("..", "X", 1), "validate", "not a safe folder name"),
    ("top-unsafe-escape", None, job("../../outside", "X", 1), "validate", "not a safe folder name"),
    ("nesting-too-deep", "RANK", b"[" * 100_000, "parse", "nesting too deep"),
    ("top-invalid-json", None, b"{nope", "parse", "invalid JSON"),
    ("top-empty", None, b"", "parse", "empty file"),
]


def check_failed(root: Path, folder: str | None, name: str, data: bytes, stage: str, words: str) -> Path:
    """The file is in JSON_FAILED/{CLIENT}/{stamp}_{name} with its bytes and a complete reason file."""
    client = folder or "_unknown"
    failed = root / "JSON_FAILED" / client / f"{FIXED_STAMP}_{name}"
    assert failed_entries(root, name) == [failed]
    assert failed.read_bytes() == data
    reason = read_reason(failed)
    assert reason["stage"] == stage
    assert words in reason["reason"]
    source = root / "JSON" / folder / name if folder else root / "JSON" / name
    assert reason["from"] == str(source)
    assert reason["file"] == (f"{folder}/{name}" if folder else name)
    assert re.fullmatch(r"2024-03-05 06:07:08 [+-]\d{4}", reason["when"])
    # neither archived nor routed: its name exists nowhere but in the failed folder
    assert places_of(root, name) == set()
    assert not source.exists()
    return failed


@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_bad_input_goes_to_failed_with_reason(case, config, root, outside):
    _, folder, data, stage, words = case
    name = "bad.json"
    drop(root, folder, name, data)
    good = job("LOREAL", "CAMPAIGN", 1)
    drop(root, "LOREAL", "good.json", good)
    summary = run(config)
    assert (summary.archived, summary.failed, summary.pending) == (1, 1, 0)
    check_failed(root, folder, name, data, stage, words)
    assert (root / "JSON_STORE/LOREAL/good.json").read_bytes() == good
    assert (root / "CLIENT-STORES/LOREAL/IN/good.json").read_bytes() == good
    # nothing anywhere but the configured folders, nothing outside root
    assert {p.name for p in root.iterdir()} <= {
        "JSON",
        "JSON_STORE",
        "JSON_FAILED",
        "JSON_PARSER_STATE",
        "CLIENT-STORES",
    }
    assert sorted(p.name for p in root.parent.iterdir()) == ["outside", "root"]
    assert list(outside.iterdir()) == []
    assert not Path("/abs").exists()
    assert_clean(root)


def test_unsafe_client_codes_create_nothing_outside_configured_folders(config, root, outside):
    codes = ["../x", "a/b", "/abs", "..", "../../outside", str(outside / "evil"), "../JSON_STORE", ".", ".hidden"]
    for n, code in enumerate(codes):
        drop(root, None, f"u{n}.json", job(code, "CELTRA", n))
    summary = run(config)
    assert (summary.failed, summary.archived) == (len(codes), 0)
    assert sorted(os.listdir(root)) == ["JSON", "JSON_FAILED", "JSON_PARSER_STATE"]
    assert os.listdir(root / "JSON_FAILED") == ["_unknown"]
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in root.parent.iterdir()) == ["outside", "root"]


def test_file_over_max_file_bytes_is_failed_and_one_at_the_limit_is_not(root):
    config = make_config(root, max_file_bytes=2000)
    big = job("RANK", "X", 1, size=2500)
    at_limit = job("RANK", "X", 2, size=1800)
    at_limit += b" " * (2000 - len(at_limit))
    assert len(at_limit) == 2000
    drop(root, "RANK", "big.json", big)
    drop(root, "RANK", "limit.json", at_limit)
    summary = run(config)
    assert (summary.archived, summary.failed) == (1, 1)
    check_failed(root, "RANK", "big.json", big, "intake", "over max_file_bytes")
    assert (root / "JSON_STORE/RANK/limit.json").read_bytes() == at_limit


def test_symlink_is_moved_aside_and_its_target_untouched(config, root, outside):
    target = outside / "target.json"
    data = job("RANK", "PRODUCTION", 9)
    target.write_bytes(data)
    before = os.stat(target)
    link = root / "JSON" / "RANK" / "link.json"
    link.parent.mkdir()
    os.symlink(target, link)
    drop(root, "RANK", "good.json", job("RANK", "X", 1))
    summary = run(config)
    assert (summary.archived, summary.failed) == (1, 1)
    failed = root / "JSON_FAILED/RANK" / f"{FIXED_STAMP}_link.json"
    assert failed_entries(root, "link.json") == [failed]
    assert failed.is_symlink() and os.readlink(failed) == str(target)
    reason = read_reason(failed)
    assert "symlink" in reason["reason"] and reason["stage"] == "intake"
    assert not os.path.lexists(link)
    assert places_of(root, "link.json") == set()
    assert target.read_bytes() == data
    after = os.stat(target)
    assert (after.st_ino, after.st_mtime_ns, after.st_nlink) == (before.st_ino, before.st_mtime_ns, before.st_nlink)
    assert sorted(os.listdir(outside)) == ["target.json"]


def test_symlink_to_folder_at_top_is_moved_aside_unfollowed(config, root, outside):
    (outside / "client").mkdir()
    inner = outside / "client" / "inner.json"
    inner.write_bytes(job("RANK", "X", 1))
    os.symlink(outside / "client", root / "JSON" / "RANK")
    summary = run(config)
    assert (summary.archived, summary.failed) == (0, 1)
    (failed,) = failed_entries(root, "RANK")
    assert failed.parent == root / "JSON_FAILED/_unknown" and failed.is_symlink()
    assert "symlink" in read_reason(failed)["reason"]
    assert inner.read_bytes() == job("RANK", "X", 1)
    assert not (root / "JSON_STORE").exists()


# --- 3. a backlog ---------------------------------------------------------------------------------


def test_fifty_good_and_five_bad_all_reach_the_right_places(config, root):
    good = {}
    for folder, name, data, valid in backlog(50, seed=7, bad_every=0):
        assert valid
        drop(root, folder, name, data)
        d = __import__("json").loads(data)["JobSpecification"]["JobDetails"]
        good[name] = (data, expected_places(folder, d["JobCategory"]))
    bad = {
        "b1.json": ("RANK", b"{"),
        "b2.json": ("LOREAL", b""),
        "b3.json": ("BISSELL", job("RANK", "X", 1)),
        "b4.json": (None, job("../x", "X", 1)),
        "b5.json": ("OLIVER", b"[]"),
    }
    for name, (folder, data) in bad.items():
        drop(root, folder, name, data)
    summary = run(config)
    assert (summary.archived, summary.failed, summary.pending) == (50, 5, 0)
    assert summary.routed == sum(len(p) > 1 for _, p in good.values())
    for name, (data, places) in good.items():
        assert places_of(root, name) == places, name
        for place in places:
            assert (root / place / name).read_bytes() == data
    for name, (folder, data) in bad.items():
        (failed,) = failed_entries(root, name)
        assert failed.parent.name == (folder or "_unknown")
        assert failed.read_bytes() == data
        assert places_of(root, name) == set()
    assert files(root / "JSON") == {}
    assert_clean(root)


# --- 4. Pipeline.submit and drain -----------------------------------------------------------------


def test_a_waiting_file_superseded_by_a_newer_one_is_set_aside_not_lost(root):
    from json_workflow.delivery.model import Summary
    from json_workflow.delivery.pipeline import Pipeline
    from json_workflow.intake.scan import scan
    from json_workflow.run import exclusive

    blocker = root / "SYNC/MAKE/Monday Rank"
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"not a folder")
    old, new = job("RANK", "X", 1), job("RANK", "X", 2)
    drop(root, "RANK", "v.json", old)
    config = build({}, "t", root=root)
    with exclusive(config) as journal:
        pipeline = Pipeline(config, journal)
        batch = [(c, "STARTUP") for c in scan(config.hot)]
        (claimed,) = [pipeline.claims.claim(c) for c, _ in batch]
        newer = drop(root, "RANK", "v.json", new)  # the newer version arrives while the old one is claimed
        os.utime(newer, (time.time() - 5, time.time() - 5))  # and is whole: written a while ago
        summary = Summary()
        pipeline.submit([(claimed, "STARTUP")], summary)
        pipeline.drain(summary)
        pipeline.close()
    assert (summary.pending, summary.failed) == (0, 1)  # it is in the failed folder, counted there
    assert (root / "JSON/RANK/v.json").read_bytes() == new
    (aside,) = failed_entries(root, "v.json")
    assert aside.read_bytes() == old
    assert "superseded" in read_reason(aside)["reason"]


@pytest.mark.parametrize("same", [True, False])
def test_a_version_written_again_while_taken_is_dropped_when_the_same_and_set_aside_when_not(root, caplog, same):
    """A writer still holding the taken file open writes it again by name: the taken version waits, finds the
    newer one in its place, still being written, waits for it to be written, then is dropped (the same bytes:
    logged once at INFO, counted apart) or set aside."""
    from json_workflow.delivery.model import Outcome, Summary
    from json_workflow.delivery.pipeline import Pipeline
    from json_workflow.intake.scan import scan
    from json_workflow.run import exclusive, run_once
    from json_workflow.store import open_store

    caplog.set_level(logging.INFO, logger="json_workflow")
    first = job("RANK", "X", 1)
    newer = first if same else job("RANK", "X", 2)
    origin = drop(root, "RANK", "v.json", first)
    config = build({}, "t", root=root)
    writer = os.open(origin, os.O_WRONLY)  # still open: the taken version must wait
    try:
        with exclusive(config) as journal:
            pipeline = Pipeline(config, journal)
            (claimed,) = [pipeline.claims.claim(c) for c in scan(config.hot)]
            again = os.open(origin, os.O_WRONLY | os.O_CREAT | os.O_EXCL)  # written again under its name...
            os.write(again, newer[:40])  # ... and not finished when the first comes back
            summary = Summary()
            pipeline.submit([(claimed, "REALTIME")], summary)
            assert [d.outcome for d in pipeline.drain(summary)] == [Outcome.LEFT_CLAIMED]  # kept back, claimed
            assert (summary.pending, summary.failed) == (1, 0) and not (root / "JSON_FAILED").exists()
            os.write(again, newer[40:])
            os.close(again)
            os.utime(origin, (time.time() - 5, time.time() - 5))  # written a while ago
            done = pipeline.drain(summary)  # judged now
            pipeline.close()
    finally:
        os.close(writer)
    assert [d.outcome for d in done] == [Outcome.SUPERSEDED if same else Outcome.FAILED]
    assert (root / "JSON/RANK/v.json").read_bytes() == newer  # the newer version waits to be processed
    assert not (root / "JSON/.processing").exists() or not list((root / "JSON/.processing").rglob("*.json"))
    if same:
        assert (summary.superseded, summary.failed, summary.pending) == (1, 0, 0)
        assert failed_entries(root, "v.json") == [] and not (root / "JSON_FAILED").exists()
        said = [r for r in caplog.records if "written again while it was taken" in r.getMessage()]
        assert [r.levelname for r in said] == ["INFO"]
        assert "RANK/v.json was written again while it was taken (the same bytes)" in said[0].getMessage()
        assert "1 written again while taken" in summary.line()
    else:
        assert (summary.superseded, summary.failed, summary.pending) == (0, 1, 0)
        (aside,) = failed_entries(root, "v.json")
        assert aside.read_bytes() == first and "superseded" in read_reason(aside)["reason"]
    assert run_once(config).archived == 1  # the newer version goes through as any file
    assert (root / "JSON_STORE/RANK/v.json").read_bytes() == newer
    store = open_store(config)
    outcomes = [(r.outcome, r.source) for r in store.receptions("RANK/v.json")]
    store.close()
    assert outcomes == [("archived", "STARTUP"), ("superseded" if same else "failed", "REALTIME")]


def test_batches_in_flight_are_finished_by_drain_and_keep_no_frames(config, root):
    """`submit` leaves a batch in flight (its claims known to the journal); `drain` finishes it.

    A rejected file's exception is kept without its traceback: its frames would hold the whole batch.
    """
    from json_workflow.delivery.model import Summary
    from json_workflow.delivery.pipeline import Pipeline
    from json_workflow.intake.scan import scan
    from json_workflow.run import exclusive

    drop(root, "RANK", "good.json", job("RANK", "X", 1))
    drop(root, "RANK", "bad.json", b"{")
    with exclusive(config) as journal:
        pipeline = Pipeline(config, journal)
        summary = Summary()
        assert pipeline.submit([(c, "STARTUP") for c in scan(config.hot)], summary) == []
        assert len(journal.claims()) == 2  # in flight: the journal knows both claims until they are finished
        done = pipeline.drain(summary)
        pipeline.close()
        assert journal.claims() == []
    assert sorted(d.candidate.name for d in done) == ["bad.json", "good.json"]
    assert (summary.archived, summary.failed) == (1, 1)
    assert (root / "JSON_STORE/RANK/good.json").read_bytes() == job("RANK", "X", 1)
    (rejected,) = [d.rejection for d in done if d.rejection is not None]
    assert rejected.__traceback__ is None and rejected.__context__ is None


# --- 5. flushes -----------------------------------------------------------------------------------


def test_a_full_destination_holds_up_only_its_own_files_with_flush_per_file(root, tiny_tmpfs, caplog):
    # The big file's first copy is written, its second finds the disk full: the first is discarded, and
    # the flush of the batch must not fail for want of it.
    caplog.set_level(logging.INFO, logger="json_workflow")
    (root / "SYNC/MAKE").mkdir(parents=True)
    (root / CELTRA).symlink_to(tiny_tmpfs)
    big, small = job("RANK", "CELTRA", 1, size=200_000), job("RANK", "X", 2)
    drop(root, "RANK", "big.json", big)
    drop(root, "RANK", "small.json", small)
    summary = run(make_config(root, flush="file"))
    assert (summary.archived, summary.pending) == (1, 1)
    assert (root / "JSON/RANK/big.json").read_bytes() == big
    assert (root / "SYNC/MAKE/Monday Rank/small.json").read_bytes() == small
    assert [r.getMessage() for r in caplog.records if "Flush failed" in r.getMessage()] == []
    assert_clean(root)


@pytest.mark.parametrize("flush", ["filesystem", "file"])
def test_a_long_named_bad_file_alone_is_flushed_and_forgotten(flush, root, caplog):
    # Its claim has a folder of its own, removed when the claim is released, after it was noted for the flush.
    caplog.set_level(logging.INFO, logger="json_workflow")
    drop(root, "RANK", "a" * 245 + ".json", b"{long")
    summary = run(make_config(root, flush=flush))
    assert (summary.failed, summary.pending) == (1, 0)
    assert [r.getMessage() for r in caplog.records if "Flush failed" in r.getMessage()] == []
    assert SqliteStore(root / "JSON_PARSER_STATE").claims() == []


def test_a_failed_flush_leaves_every_file_waiting_and_the_next_run_delivers_it(root, failing_disk):
    """A disk that accepts writes but fails to flush them: no file is lost, the run ends, none is published."""
    from conftest import cli

    rank = {f"r{n}.json": job("RANK", "X", n) for n in range(8)}
    acme = {f"a{n}.json": job("ACME", "X", n) for n in range(4)}
    for name, data in rank.items():
        drop(root, "RANK", name, data)
    for name, data in acme.items():
        drop(root, "ACME", name, data)
    monday = root / "SYNC/MAKE/Monday Rank"
    monday.parent.mkdir(parents=True)
    monday.symlink_to(failing_disk)  # RANK's routed copies are written on the failing disk
    (failing_disk / "filler").write_bytes(os.urandom(6 << 20))  # more than its backing can take

    first = cli("run", "--once", "--root", str(root), timeout=60)
    assert first.returncode == 0, first.stderr
    assert "Flush failed" in first.stderr, first.stderr
    waiting = {p.name for p in (root / "JSON").rglob("*.json")}
    archived = {p.name for p in (root / "JSON_STORE").rglob("*.json")} if (root / "JSON_STORE").exists() else set()
    assert waiting | archived == set(rank) | set(acme) and not waiting & archived
    assert set(rank) <= waiting  # none of the failing disk's copies was published
    assert sorted(p.name for p in failing_disk.iterdir()) == ["filler", "lost+found"]  # no temporary left
    assert not list((root / "JSON").glob(".processing/**/*.json"))  # nothing left claimed

    monday.unlink()  # the disk is replaced
    second = cli("run", "--once", "--root", str(root), timeout=60)
    assert second.returncode == 0, second.stderr
    assert not list((root / "JSON").rglob("*.json"))
    for name, data in rank.items():
        assert (root / "JSON_STORE/RANK" / name).read_bytes() == data
        assert (monday / name).read_bytes() == data
    for name, data in acme.items():
        assert (root / "JSON_STORE/ACME" / name).read_bytes() == data


def test_a_service_batch_is_batch_size_while_files_trickle_in_and_larger_in_a_backlog():
    from json_workflow.delivery.processes import batch_files

    assert [batch_files(10, ready) for ready in (0, 1, 199)] == [10, 10, 10]
    assert [batch_files(10, ready) for ready in (200, 100_000)] == [50, 50]
    assert batch_files(100, 100_000) == 100  # a larger batch_size (a fleet's) is kept
