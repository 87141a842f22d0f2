"""replay: the archive routed by OLD and NEW rules; what differs, read-only, with its totals and exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import cli, snapshot
from json_workflow.config import build
from json_workflow.replay import Totals, archived, replay
from json_workflow.route import route
from json_workflow.samples import job
from test_properties import condition_value

CLIENTS = ["RANK", "LOREAL", "BISSELL"]
CATEGORIES = ["PRODUCTION", "CELTRA", "SOCIAL"]


def archive(root: Path, files: list[tuple[str, str, int]]) -> None:
    """Archived job files: (client, category, number) each as JSON_STORE/CLIENT/NUMBER.json."""
    for client, category, number in files:
        folder = root / "JSON_STORE" / client
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{number}.json").write_bytes(job(client, category, number))


rule_set = st.lists(
    st.dictionaries(st.sampled_from(["ClientCode", "JobCategory", "Title"]), condition_value, min_size=1, max_size=2),
    max_size=4,
)
jobs = st.lists(st.tuples(st.sampled_from(CLIENTS), st.sampled_from(CATEGORIES)), min_size=1, max_size=8)


def config_of(root: Path, whens: list[dict], prefix: str):
    routes = [{"name": f"{prefix}{i}", "destination": f"D{i % 3}", "when": w} for i, w in enumerate(whens)]
    return build({"routes": routes}, "test", root=root)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old_rules=rule_set, new_rules=rule_set, files=jobs)
def test_replay_differences_are_those_of_route_over_both_rule_sets(old_rules, new_rules, files):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        archive(root, [(client, category, n) for n, (client, category) in enumerate(files)])
        old, new = config_of(root, old_rules, "old"), config_of(root, new_rules, "new")
        totals = Totals()
        found = {c.path: c for c in replay(archived(new, None, None), old, new, totals)}
        unchanged = list(replay(archived(old, None, None), old, old, Totals()))
        assert unchanged == []  # NEW = OLD changes nothing
        assert totals.files == len(files) and not totals.unreadable
        for n, (client, category) in enumerate(files):
            details = json.loads(job(client, category, n))["JobSpecification"]["JobDetails"]
            before = {old.folder(r.destination) for r in route(details, old.routes)}
            after = {new.folder(r.destination) for r in route(details, new.routes)}
            change = found.get(str(root / "JSON_STORE" / client / f"{n}.json"))
            added = {d.folder for d in change.added} if change else set()
            removed = {d.folder for d in change.removed} if change else set()
            assert (added, removed) == (after - before, before - after)


def write_new(tmp_path: Path, root: Path) -> Path:
    new = tmp_path / "new.toml"
    new.write_text(
        f'root = "{root}"\n'
        '[[routes]]\nname = "Monday Rank"\ndestination = "SYNC/MAKE/Monday Rank"\nwhen = { ClientCode = "RANK" }\n'
        '[[routes]]\nname = "Stores"\ndestination = "CLIENT-STORES/{ClientCode}/IN"\n'
        'when = { ClientCode = ["LOREAL", "BISSELL"] }\n'
    )
    return new


def test_the_command_prints_changes_and_totals_exits_1_and_writes_nothing(root, tmp_path):
    archive(root, [("RANK", "CELTRA", 1), ("LOREAL", "PRODUCTION", 2), ("BISSELL", "PRODUCTION", 3)])
    before = snapshot(root)
    done = cli("replay", "--config", str(write_new(tmp_path, root)))
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "JSON_STORE/RANK/1.json\n  - SYNC/MAKE/Celtra - Create_Rename - Project_Design File" in out
    assert 'JSON_STORE/BISSELL/3.json\n  + CLIENT-STORES/BISSELL/IN  (rule "Stores")\n' in out
    assert '  - CLIENT-STORES/BISSELL-WRIKE/IN  (rule "BISSELL-WRIKE/IN")' in out
    assert "LOREAL" not in out  # "Stores" sends it where "LOREAL/IN" did: the same folder, no change
    assert "3 archived files read, 2 would change" in out
    assert "by rule: +1 Stores; -1 BISSELL-WRIKE/IN; -1 Celtra (eligible client)" in out
    assert "by client: BISSELL 1, RANK 1" in out
    assert snapshot(root) == before  # read-only


def test_no_change_exits_0_and_an_invalid_configuration_2(root, tmp_path):
    archive(root, [("RANK", "PRODUCTION", 1)])
    same = tmp_path / "same.toml"
    same.write_text(f'root = "{root}"\n')
    done = cli("replay", "--config", str(same))
    assert (done.returncode, done.stdout.strip()) == (0, "1 archived files read, 0 would change")
    broken = tmp_path / "broken.toml"
    broken.write_text(
        f'root = "{root}"\n[[routes]]\nname = "x"\ndestination = "D"\nwhen = {{ T = {{ regex = "(" }} }}\n'
    )
    bad = cli("replay", "--config", str(broken))
    assert bad.returncode == 2 and "routes[0].when.T: invalid regex" in bad.stderr


def test_dates_select_by_modification_time_and_clients_by_folder(root, tmp_path):
    archive(root, [("RANK", "PRODUCTION", 1), ("LOREAL", "PRODUCTION", 2), ("BISSELL", "PRODUCTION", 3)])
    old = 1_700_000_000  # 2023-11-14 22:13 UTC
    os.utime(root / "JSON_STORE/BISSELL/3.json", (old, old))
    new = str(write_new(tmp_path, root))
    recent = json.loads(cli("replay", "--config", new, "--since", "2024-01-01", "--format", "json").stdout)
    assert [c["client"] for c in recent["changes"]] == [] and recent["totals"]["files"] == 2
    then = json.loads(cli("replay", "--config", new, "--until", "2023-11-14", "--format", "json").stdout)
    assert [c["client"] for c in then["changes"]] == ["BISSELL"]
    only = cli("replay", "--config", new, "--client", "bissell", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(only)))
    assert {(r["client"], r["change"], r["rules"]) for r in rows} == {
        ("BISSELL", "added", "Stores"),
        ("BISSELL", "removed", "BISSELL-WRIKE/IN"),
    }


# `replay --apply` run through this wrapper is killed (SIGKILL) at its Nth publish, before it.
KILLED_AT_PUBLISH = """
import os, signal, sys
from json_workflow.delivery import durable
real, count = durable.move_new, [0]
def move_new(source, target):
    count[0] += 1
    if count[0] == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(source, target)
durable.move_new = move_new
from json_workflow.cli import main
main(["replay", "--apply", "--config", sys.argv[2]])
"""


def test_apply_interrupted_by_kill_and_run_again_delivers_each_added_copy_exactly_once(root, tmp_path):
    files = [("LOREAL", "PRODUCTION", n) for n in range(6)] + [("BISSELL", "SOCIAL", n) for n in range(6, 12)]
    archive(root, files)
    new = str(write_new(tmp_path, root))
    (root / "CLIENT-STORES/BISSELL/IN").mkdir(parents=True)
    (root / "CLIENT-STORES/BISSELL/IN/7.json").write_bytes(b"someone else's")  # never overwritten
    (root / "CLIENT-STORES/BISSELL/IN/8.json").write_bytes(job("BISSELL", "SOCIAL", 8))  # already delivered
    for kill_at in (3, 2):
        killed = subprocess.run([sys.executable, "-c", KILLED_AT_PUBLISH, str(kill_at), new], capture_output=True)
        assert killed.returncode == -9
    done = cli("replay", "--apply", "--config", new)
    assert done.returncode == 1, done.stdout + done.stderr  # 7.json is left alone
    assert f"left alone {root}/CLIENT-STORES/BISSELL/IN/7.json" in done.stdout
    delivered = sorted(os.listdir(root / "CLIENT-STORES/BISSELL/IN"))
    assert delivered == sorted(f"{n}.json" for n in range(6, 12))  # no temporaries left, each once
    for n in range(6, 12):
        expected = b"someone else's" if n == 7 else job("BISSELL", "SOCIAL", n)
        assert (root / f"CLIENT-STORES/BISSELL/IN/{n}.json").read_bytes() == expected
    assert not (root / "CLIENT-STORES/LOREAL/IN").exists() or os.listdir(root / "CLIENT-STORES/LOREAL/IN") == []
    again = cli("replay", "--apply", "--config", new)
    assert "delivered 0 copies, 5 already there, 1 left alone" in again.stdout
    history = json.loads(cli("history", "BISSELL/9.json", "--json", "--root", str(root)).stdout)
    assert [(h["source"], h["routed"]) for h in history] == [
        ("REPLAY", [["Stores", f"{root}/CLIENT-STORES/BISSELL/IN"]])
    ]
