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

from conftest import STORE, Consumer, cli, make_config, query, snapshot, wait_for
from json_workflow.config import build
from json_workflow.replay import Totals, archived, replay
from json_workflow.routing.route import route
from json_workflow.samples import job
from json_workflow.store import open_store
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
    assert (done.returncode, done.stdout.strip()) == (0, "1 archived file read, 0 would change")
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


# `replay --apply ARGS` run through this wrapper is killed (SIGKILL) at the Nth call of one of its steps:
# writing a temporary, renaming one into place, or just after a write to the journal committed.
KILLED_AT = """
import os, signal, sys
from json_workflow import durable
from json_workflow.store.replays import ReplayStore
where, n, count = sys.argv[1], int(sys.argv[2]), [0]
def killing(real, after):
    def call(*args, **kwargs):
        count[0] += 1
        if count[0] == n and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if count[0] == n and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return call
if where == "write":
    durable.write_new = killing(durable.write_new, False)
elif where == "rename":
    durable.rename_new = killing(durable.rename_new, False)
else:
    ReplayStore.write_replays = killing(ReplayStore.write_replays, True)
from json_workflow.cli import main
main(["replay", "--apply", *sys.argv[3:]])
"""
# Kill points, in order, for one client's copies: a temporary written; the journal's first write after an
# interrupted run was finished; a rename into place; the plan's commit... and for another client's.
KILLS = {
    "BISSELL": [("write", 3), ("commit", 1), ("rename", 2), ("commit", 1)],
    "ACME": [("commit", 2), ("rename", 3), ("commit", 1)],
}


def killed(where: str, n: int, *args: str) -> None:
    done = subprocess.run([sys.executable, "-c", KILLED_AT, where, str(n), *args], capture_output=True)
    assert done.returncode == -9, (where, n, done.stdout, done.stderr)


def store_toml() -> str:
    """The running test's store, as a configuration file says it (nothing for SQLite)."""
    return f'[store]\nurl = "{STORE["url"]}"\n' if STORE["url"] else ""


def test_apply_delivers_each_added_copy_once_as_a_consumer_sees_it_through_kills_and_reruns(root, tmp_path, backend):
    files = [("BISSELL", "SOCIAL", n) for n in range(20)] + [("ACME", "PRODUCTION", n) for n in range(20, 35)]
    archive(root, files + [("RANK", "PRODUCTION", 40)])
    new = tmp_path / "new.toml"
    new.write_text(
        f'root = "{root}"\n[[routes]]\nname = "Stores"\ndestination = "CLIENT-STORES/{{ClientCode}}/IN"\n'
        'when = { ClientCode = ["BISSELL", "ACME"] }\n' + store_toml()
    )
    stores = {client: root / f"CLIENT-STORES/{client}/IN" for client in KILLS}
    stores["BISSELL"].mkdir(parents=True)
    (stores["BISSELL"] / "7.json").write_bytes(job("BISSELL", "SOCIAL", 7))  # there already with the same bytes
    consumers = {client: Consumer(folder) for client, folder in stores.items()}  # each takes every file that lands
    try:
        for client, kills in KILLS.items():  # kill -9 at each step of the journal and the disk, then run again
            for where, n in kills:
                killed(where, n, "--config", str(new), "--client", client)
                for consumer in consumers.values():  # once 7.json was seen there (recorded as delivered)
                    if not consumer.is_alive():
                        consumer.start()
        done = cli("replay", "--apply", "--config", str(new))  # every client now
        assert done.returncode == 0, done.stdout + done.stderr
        again = cli("replay", "--apply", "--config", str(new))
        assert again.returncode == 0 and "delivered 0 copies" in again.stdout, again.stdout
        for client, consumer in consumers.items():
            names = {f"{n}.json" for c, _, n in files if c == client}
            wait_for(lambda c=consumer, n=names: set(c.seen) == n, what=f"every copy of {client} taken")
    finally:
        for consumer in consumers.values():
            consumer.stop.set()
            consumer.join()
    for consumer in consumers.values():  # exactly once is what a consumer sees
        assert {name: count for name, count in consumer.seen.items() if count != 1} == {}
    assert not os.listdir(stores["BISSELL"]) and not os.listdir(stores["ACME"])  # no temporary left behind
    # Each file that got a copy is one REPLAY reception, whatever the kills (7 was there: no copy made).
    receptions = query(make_config(root), "SELECT name, category, job FROM files WHERE source = 'REPLAY'")
    expected = [(f"{c}/{n}.json", category, str(n)) for c, category, n in files if n != 7]
    assert sorted(receptions) == sorted(expected)
    history = json.loads(cli("history", "19", "--json", "--config", str(new)).stdout)
    assert [(h["source"], h["category"], h["routed"]) for h in history] == [
        ("REPLAY", "SOCIAL", [["Stores", f"{root}/CLIENT-STORES/BISSELL/IN"]])
    ]
    plain = cli("replay", "--config", str(new))  # nothing left to do: the added copies count as delivered
    assert "36 archived files read, 21 would change, 35 added copies delivered already" in plain.stdout
    assert plain.returncode == 1  # what NEW removes (BISSELL-WRIKE, Monday Rank) still differs
    assert "JSON_STORE/BISSELL/0.json\n  - CLIENT-STORES/BISSELL-WRIKE/IN" in plain.stdout
    assert '  = CLIENT-STORES/BISSELL/IN  (rule "Stores", delivered already)' in plain.stdout
    kept = tmp_path / "kept.toml"  # NEW, keeping what it removed: only the copies it added differ, all delivered
    kept.write_text(new.read_text() + "".join(
        f'[[routes]]\nname = "{name}"\ndestination = "{folder}"\nwhen = {{ ClientCode = "{client}" }}\n'
        for name, folder, client in [("Rank", "SYNC/MAKE/Monday Rank", "RANK"),
                                     ("Wrike", "CLIENT-STORES/BISSELL-WRIKE/IN", "BISSELL")]
    ))  # fmt: skip
    nothing = cli("replay", "--config", str(kept))
    assert nothing.returncode == 0 and "0 would change, 35 added copies delivered already" in nothing.stdout


def test_a_failed_copy_is_left_alone_and_said_why_in_every_format_with_paths_below_the_root(root, tmp_path):
    archive(root, [("BISSELL", "SOCIAL", 1), ("BISSELL", "SOCIAL", 2)])
    new = str(write_new(tmp_path, root))
    (root / "CLIENT-STORES/BISSELL/IN").mkdir(parents=True)
    (root / "CLIENT-STORES/BISSELL/IN/2.json").write_bytes(b"someone else's")
    done = cli("replay", "--apply", "--config", new, "--format", "json")
    assert done.returncode == 1, done.stderr
    found = json.loads(done.stdout)
    assert found["delivered"] == [
        {"file": "JSON_STORE/BISSELL/1.json", "folder": "CLIENT-STORES/BISSELL/IN", "rules": ["Stores"]}
    ]
    assert found["left_alone"] == [
        {
            "file": "JSON_STORE/BISSELL/2.json",
            "folder": "CLIENT-STORES/BISSELL/IN",
            "rules": ["Stores"],
            "reason": "a file of that name with other bytes is there",
        }
    ]
    rows = list(csv.DictReader(io.StringIO(cli("replay", "--apply", "--config", new, "--format", "csv").stdout)))
    assert [(r["file"], r["action"], r["folder"], r["reason"]) for r in rows] == [
        (
            "JSON_STORE/BISSELL/2.json",
            "left alone",
            "CLIENT-STORES/BISSELL/IN",
            "a file of that name with other bytes is there",
        )
    ]
    text = cli("replay", "--apply", "--config", new)
    assert text.returncode == 1
    assert "left alone CLIENT-STORES/BISSELL/IN/2.json: a file of that name with other bytes is there" in text.stdout
    assert str(root) not in text.stdout + done.stdout


def test_apply_never_delivers_again_what_the_pipeline_delivered_under_the_new_rules(root, tmp_path, backend):
    """The new rules in force for a while (a reload), then `replay --from OLD --apply`: the files received since
    went where the new rules send them; a consumer took them; they are not delivered twice."""
    new = write_new(tmp_path, root)
    new.write_text(new.read_text() + store_toml())
    (root / "JSON/BISSELL").mkdir(parents=True)
    (root / "JSON/BISSELL/1.json").write_bytes(job("BISSELL", "SOCIAL", 1))
    assert cli("run", "--once", "--config", str(new)).returncode == 0
    delivered = root / "CLIENT-STORES/BISSELL/IN/1.json"
    assert delivered.exists()
    delivered.unlink()  # taken downstream
    old = tmp_path / "old.toml"
    old.write_text(f'root = "{root}"\n' + store_toml())
    plain = cli("replay", "--config", str(new), "--from", str(old))
    assert plain.returncode == 1 and "1 added copy delivered already" in plain.stdout  # BISSELL-WRIKE is removed
    done = cli("replay", "--apply", "--config", str(new), "--from", str(old))
    assert done.returncode == 0 and "delivered 0 copies" in done.stdout, done.stdout
    assert not delivered.exists()


def test_two_applies_at_once_do_not_run_together(root, tmp_path):
    archive(root, [("BISSELL", "SOCIAL", 1)])
    new = str(write_new(tmp_path, root))
    config = build({}, "t", root=root)
    (root / "JSON_PARSER_STATE").mkdir()
    store = open_store(config)
    try:
        assert store.exclusive("replay")
        busy = cli("replay", "--apply", "--config", new)
    finally:
        store.close()
    assert busy.returncode == 2 and "another `replay --apply` is running on this root" in busy.stderr
    assert not (root / "CLIENT-STORES/BISSELL/IN").exists()


def test_apply_and_replay_keep_a_name_that_is_not_utf8(root, tmp_path, backend):
    name = os.fsdecode(b"caf\xe9.json")  # a Latin-1 name from an SMB or FTP client
    (root / "JSON_STORE/BISSELL").mkdir(parents=True)
    (root / "JSON_STORE/BISSELL" / name).write_bytes(job("BISSELL", "SOCIAL", 1))
    new = write_new(tmp_path, root)
    new.write_text(new.read_text() + store_toml())
    done = cli("replay", "--apply", "--config", str(new), "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    [delivered] = json.loads(done.stdout)["delivered"]
    assert delivered["file"] == "JSON_STORE/BISSELL/caf\\xe9.json"
    copy = root / "CLIENT-STORES/BISSELL/IN" / name
    assert copy.read_bytes() == job("BISSELL", "SOCIAL", 1)
    copy.unlink()  # taken downstream: never delivered again
    again = cli("replay", "--apply", "--config", str(new))
    assert again.returncode == 0 and "delivered 0 copies, 1 delivered before" in again.stdout, again.stdout
    assert not copy.exists()


def test_old_and_new_rules_must_keep_their_statistics_in_one_store(root, tmp_path):
    archive(root, [("BISSELL", "SOCIAL", 1)])
    new = write_new(tmp_path, root)
    old = tmp_path / "old.toml"
    old.write_text(f'root = "{root}"\n[paths]\nstate = "OTHER_STATE"\n')
    done = cli("replay", "--config", str(new), "--from", str(old), "--apply")
    assert done.returncode == 2 and "OLD and NEW keep their statistics in different stores" in done.stderr
    assert not (root / "CLIENT-STORES").exists()
