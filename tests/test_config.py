"""Configuration: built-in defaults, TOML loading, validation messages with file and key path."""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path

import pytest

from json_workflow.config import build, load
from json_workflow.errors import ConfigError
from json_workflow.routing.rules import SEED_ROUTES

REPO = Path(__file__).resolve().parent.parent
TWIST = REPO / "examples" / "twist.toml"

EXPECTED_ROUTES = [
    ("Monday Rank", "SYNC/MAKE/Monday Rank", {"ClientCode": ("RANK",)}),
    ("Monday RB", "SYNC/MAKE/Monday RB", {"ClientCode": ("RECKITTBENCKISER",)}),
    ("BISSELL-WRIKE/IN", "CLIENT-STORES/BISSELL-WRIKE/IN", {"ClientCode": ("BISSELL",)}),
    ("LOREAL/IN", "CLIENT-STORES/LOREAL/IN", {"ClientCode": ("LOREAL",)}),
    ("Celtra", "SYNC/MAKE/Celtra - Create_Rename - Project_Design File", {"ClientCode": ("CELTRA",)}),
    (
        "Celtra (eligible client)",
        "SYNC/MAKE/Celtra - Create_Rename - Project_Design File",
        {
            "JobCategory": ("CELTRA",),
            "ClientCode": ("CIBC", "OLIVER", "ADIDAS", "PAYPAL", "RECKITTBENCKISER", "BAYER", "3M", "RANK"),
        },
    ),
]


def _table(config):
    return [(r.name, r.destination, values(r)) for r in config.routes]


def values(rule) -> dict:
    """A rule's equality conditions as (field -> the values it accepts)."""
    return {field: test.values for field, test in rule.when.items()}


def problems(data, root=None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        build(data, "cfg.toml", root)
    assert e.value.source == "cfg.toml"
    return e.value.problems


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


# --- built-in defaults (pure) ---------------------------------------------------------------------


def test_builtin_defaults_are_the_seed_setup():
    c = build({}, "built-in")
    assert c.root == Path("/data/PRODUCTION")
    assert c.hot == Path("/data/PRODUCTION/JSON")
    assert c.archive == Path("/data/PRODUCTION/JSON_STORE")
    assert c.failed == Path("/data/PRODUCTION/JSON_FAILED")
    assert c.logs == Path("/data/PRODUCTION/JSON_PARSER_LOGS")
    assert c.permissions.file_mode == 0o664
    assert c.permissions.dir_mode == 0o775
    assert c.max_file_bytes == 10 * 1024 * 1024
    assert c.flush == "filesystem"


def test_builtin_routes_are_the_routing_matrix():
    assert _table(build({}, "built-in")) == EXPECTED_ROUTES


def test_root_argument_overrides_root_key(tmp_path):
    c = build({"root": "/somewhere/else"}, "x", root=tmp_path)
    assert c.root == tmp_path
    assert c.hot == tmp_path / "JSON"


def test_relative_root_is_made_absolute():
    c = build({"root": "rel/data"}, "x")
    assert c.root.is_absolute()
    assert c.root == Path(os.path.abspath("rel/data"))


def test_relative_paths_are_under_root_and_absolute_paths_stay(tmp_path):
    c = build({"paths": {"hot": "IN", "archive": "/abs/archive"}}, "x", root=tmp_path)
    assert c.hot == tmp_path / "IN"
    assert c.archive == Path("/abs/archive")


def test_partial_paths_keep_other_defaults():
    c = build({"paths": {"hot": "INCOMING"}}, "x", root="/r")
    assert c.hot == Path("/r/INCOMING")
    assert c.archive == Path("/r/JSON_STORE")
    assert c.failed == Path("/r/JSON_FAILED")
    assert c.logs == Path("/r/JSON_PARSER_LOGS")


def test_without_routes_keeps_the_seed_six_rules():
    c = build({"workers": 2, "permissions": {"file_mode": 0o600}}, "x")
    assert len(c.routes) == 6
    assert _table(c) == EXPECTED_ROUTES


def test_given_routes_replace_the_builtin_ones():
    c = build({"routes": [{"name": "Only", "destination": "OUT", "when": {"ClientCode": "X"}}]}, "x")
    assert [r.name for r in c.routes] == ["Only"]


@pytest.mark.parametrize("value, expected", [(0o640, 0o640), ("0664", 0o664), ("0o750", 0o750), ("777", 0o777)])
def test_permission_modes_accept_octal_ints_and_strings(value, expected):
    assert build({"permissions": {"file_mode": value}}, "x").permissions.file_mode == expected


@pytest.mark.parametrize("key, value, allowed", [("file_mode", 664, "0o777"), ("dir_mode", 775, "0o2777")])
def test_decimal_looking_mode_without_0o_is_rejected_with_how_to_write_it(key, value, allowed):
    # 664 without 0o is decimal 664 = 0o1230: its stray high bits reject it, and the hint shows the octal spelling.
    assert problems({"permissions": {key: value}}) == [
        f"permissions.{key}: expected a permission mode within {allowed}, "
        f'written 0o664 (TOML octal) or "0664" (got {value})'
    ]


def test_when_value_may_be_a_number():
    c = build({"routes": [{"name": "n", "destination": "d", "when": {"JobNumber": 5}}]}, "x")
    assert c.routes[0].when["JobNumber"].values == ("5",)


# --- validation messages (pure) -------------------------------------------------------------------


def test_unknown_top_level_key_is_rejected_with_its_name():
    assert problems({"rooot": "/x"}) == ["rooot: unknown key"]


def test_unknown_nested_key_is_rejected_with_its_path():
    assert problems({"paths": {"hott": "x"}}) == ["paths.hott: unknown key"]
    assert problems({"permissions": {"mode": 1}}) == ["permissions.mode: unknown key"]


def test_unknown_key_in_a_rule_names_the_rule_index():
    routes = copy.deepcopy(SEED_ROUTES)
    routes[2]["dest"] = "x"
    assert problems({"routes": routes}) == ["routes[2].dest: unknown key"]


@pytest.mark.parametrize("bad", [True, [], {"a": "b", "c": "d"}, [1.5], None, 1.5])
def test_bad_when_value_names_routes_index_when_field(bad):
    routes = copy.deepcopy(SEED_ROUTES)
    routes[3]["when"]["ClientCode"] = bad
    (msg,) = problems({"routes": routes})
    assert msg.startswith("routes[3].when.ClientCode: expected a string, a list of strings, or a table of one operator")


def test_missing_rule_name_is_reported():
    routes = copy.deepcopy(SEED_ROUTES)
    del routes[0]["name"]
    assert problems({"routes": routes}) == ["routes[0].name: required key is missing"]


def test_missing_destination_and_when_are_reported():
    msgs = problems({"routes": [{"name": "x"}]})
    assert "routes[0].destination: required key is missing" in msgs
    assert "routes[0].when: required key is missing" in msgs


def test_empty_when_is_rejected():
    (msg,) = problems({"routes": [{"name": "x", "destination": "d", "when": {}}]})
    assert msg.startswith("routes[0].when:")


def test_duplicate_rule_names_are_rejected():
    routes = copy.deepcopy(SEED_ROUTES)
    routes[1]["name"] = "Monday Rank"
    (msg,) = problems({"routes": routes})
    assert msg.startswith("routes:")
    assert "Monday Rank" in msg and "unique" in msg


def test_two_fields_of_one_when_differing_only_in_case_are_refused():
    routes = copy.deepcopy(SEED_ROUTES)
    routes[5]["when"]["clientcode"] = "RANK"
    assert problems({"routes": routes}) == [
        "routes[5].when: ClientCode and clientcode are the same field (field names match ignoring case); keep one"
    ]
    del routes[5]["when"]["ClientCode"]
    routes[0]["when"] = {"CLIENTCODE": "RANK"}  # each rule may spell a field its own way
    assert [values(r) for r in build({"routes": routes}, "x").routes[::5]] == [
        {"CLIENTCODE": ("RANK",)},
        {"JobCategory": ("CELTRA",), "clientcode": ("RANK",)},
    ]


@pytest.mark.parametrize(
    "data, key",
    [
        ({"flush": "sometimes"}, "flush"),
        ({"max_file_bytes": 0}, "max_file_bytes"),
        ({"workers": 0}, "workers"),
        ({"permissions": {"dir_mode": "rwx"}}, "permissions.dir_mode"),
        ({"permissions": {"file_mode": 0o10000}}, "permissions.file_mode"),
    ],
)
def test_bad_scalar_values_name_their_key(data, key):
    (msg,) = problems(data)
    assert msg.startswith(f"{key}: ")


FOLDER_KEYS = ["hot", "archive", "failed", "logs", "state"]
CLIMBING = ["..", "../OUT", "A/../../OUT", "A/..", "/data/PRODUCTION/../OUT", "/srv/./../OUT"]


@pytest.mark.parametrize("key", FOLDER_KEYS)
@pytest.mark.parametrize("folder", CLIMBING)
def test_dotdot_in_a_folder_is_refused_naming_its_key(key, folder):
    (msg,) = problems({"paths": {key: folder}})
    assert msg == (
        f'paths.{key}: expected a folder relative to root, or an absolute one, with no ".." in it '
        f"(it can lead out of the data root) (got {folder!r})"
    )
    build({"paths": {key: folder.replace("..", "...")}}, "x")  # more dots are only a name


@pytest.mark.parametrize("folder", CLIMBING)
def test_dotdot_in_a_destination_is_refused_naming_the_rule(folder):
    routes = copy.deepcopy(SEED_ROUTES)
    routes[2]["destination"] = folder
    (msg,) = problems({"routes": routes})
    assert msg.startswith('routes[2].destination: expected a folder relative to root, or an absolute one, with no ".."')
    routes[2]["destination"] = folder.replace("..", "..IN")
    assert build({"routes": routes}, "x").routes[2].destination == folder.replace("..", "..IN")


@pytest.mark.parametrize(
    "data, key",
    [
        ({"paths": {"archive": "JSON"}}, "paths.archive"),
        ({"paths": {"failed": "JSON/FAILED"}}, "paths.failed"),
        ({"paths": {"hot": "IN", "archive": "IN/./STORE/"}}, "paths.archive"),
        ({"paths": {"archive": "/r/JSON/STORE"}}, "paths.archive"),
        ({"paths": {"hot": "/srv/in", "failed": "/srv/in"}}, "paths.failed"),
        (
            {"routes": [{"name": "loop", "destination": "JSON/OUT", "when": {"ClientCode": "RANK"}}]},
            "routes[0].destination",
        ),
    ],
)
def test_a_folder_at_or_inside_the_hot_folder_is_refused_naming_its_key(data, key):
    (msg,) = problems(data, root="/r")
    assert msg.startswith(f"{key}: ")
    assert "the hot folder" in msg and "would be taken again; choose a folder outside it" in msg


def test_the_message_names_both_folders_and_says_why():
    routes = copy.deepcopy(SEED_ROUTES)
    routes[2]["destination"] = "JSON/BISSELL/IN"
    assert problems({"routes": routes}, root="/r") == [
        "routes[2].destination: /r/JSON/BISSELL/IN is inside the hot folder /r/JSON, so the files delivered there "
        "would be taken again; choose a folder outside it"
    ]
    routes[2]["destination"] = "JSON.OLD/IN"  # a sibling whose name starts like the hot folder's is outside it
    assert build({"routes": routes}, "x", root="/r").routes[2].destination == "JSON.OLD/IN"


def test_the_hot_folder_as_root_has_every_delivery_folder_inside_it():
    msgs = problems({"paths": {"hot": "."}}, root="/r")
    assert [m.split(":")[0] for m in msgs] == ["paths.archive", "paths.failed"] + [
        f"routes[{i}].destination" for i in range(6)
    ]


@pytest.mark.parametrize("key, name", [("archive", "archive"), ("failed", "failed")])
def test_the_hot_folder_inside_the_archive_or_failed_folder_is_refused(key, name):
    assert problems({"paths": {key: "DATA", "hot": "DATA/JSON"}}, root="/r") == [
        f"paths.hot: /r/DATA/JSON is inside the {name} folder /r/DATA (paths.{key}), where a folder is made for each "
        "client, named after the files; keep the hot folder outside it"
    ]


OWN = [
    ("paths.hot", "hot folder", "JSON"),
    ("paths.archive", "archive folder", "JSON_STORE"),
    ("paths.failed", "failed folder", "JSON_FAILED"),
    ("paths.logs", "logs folder", "JSON_PARSER_LOGS"),
    ("paths.state", "state folder", "JSON_PARSER_STATE"),
]


@pytest.mark.parametrize("key, name, folder", OWN)
@pytest.mark.parametrize("custom", [False, True])
def test_no_static_destination_is_in_at_or_over_one_of_json_workflows_own_folders(key, name, folder, custom):
    # "whatever paths.* says": the same with every folder renamed
    paths = {k.split(".")[1]: f"OWN/{f}-{k[6:]}" for k, _, f in OWN} if custom else {}
    folder = paths.get(key.split(".")[1], folder)

    def refused(destination: str) -> str:
        route = {"name": "r", "destination": destination, "when": {"ClientCode": "RANK"}}
        (msg,) = problems({"paths": paths, "routes": [route]}, root="/r")
        assert msg.startswith("routes[0].destination: ") and f"the {name} /r/{folder}" in msg, msg
        return msg

    assert " is the " in refused(folder) or "is the hot folder" in refused(folder)
    assert " is inside the " in refused(f"{folder}/IN")
    assert " is inside the " in refused(f"{folder}/{{Title}}")  # templated: in it whatever the value
    # A folder holding them (the data root, or OWN): the first it holds is named.
    route = {"name": "r", "destination": os.path.dirname(folder) or ".", "when": {"ClientCode": "RANK"}}
    (msg,) = problems({"paths": paths, "routes": [route]}, root="/r")
    assert msg == (
        f"routes[0].destination: {os.path.dirname(f'/r/{folder}')} holds the hot folder /r/{paths.get('hot', 'JSON')} "
        "(paths.hot); json-workflow's own folders never receive copies: choose a folder outside them"
    )
    # A templated destination may hold them: its values decide, at the route stage.
    build({"paths": paths, "routes": [{"name": "r", "destination": "{Title}", "when": {"Title": "x"}}]}, "t", "/r")


@pytest.mark.parametrize("holder, name", [("archive", "archive folder"), ("failed", "failed folder")])
@pytest.mark.parametrize("other", ["failed", "logs", "state"])
def test_no_own_folder_is_a_client_folder_of_the_archive_or_the_failed_folder(holder, name, other):
    if holder == other:
        return
    inside = problems({"paths": {holder: "DATA", other: "DATA/X"}}, root="/r")
    assert inside == [
        f"paths.{other}: /r/DATA/X is inside the {name} /r/DATA (paths.{holder}), where a folder is made for each "
        f"client, named after the files; keep the {'logs folder' if other == 'logs' else other + ' folder'} outside it"
    ]
    same = problems({"paths": {holder: "DATA", other: "DATA"}}, root="/r")
    assert len(same) == 1 and "is the same folder as the" in same[0], same


def test_an_own_folder_reached_through_a_symlink_is_refused_at_load(tmp_path):
    root = tmp_path / "root"
    (root / "JSON").mkdir(parents=True)
    (root / "JSON_PARSER_STATE").mkdir()
    (root / "SYNC").symlink_to(root / "JSON_PARSER_STATE")
    p = write(tmp_path, '[[routes]]\nname = "alias"\ndestination = "SYNC"\nwhen = { ClientCode = "X" }\n')
    with pytest.raises(ConfigError) as e:
        load(p, root)
    assert e.value.problems == [
        f"routes[0].destination: {root}/SYNC ({root}/JSON_PARSER_STATE on disk) is the state folder "
        f"{root}/JSON_PARSER_STATE (paths.state); json-workflow's own folders never receive copies: choose a "
        "folder outside them"
    ]


def test_the_hot_folder_is_checked_under_the_root_that_overrides_the_files():
    data = {"root": "/elsewhere", "paths": {"archive": "/r/JSON/STORE"}}
    assert build(data, "x").archive == Path("/r/JSON/STORE")
    (msg,) = problems(data, root="/r")
    assert msg.startswith("paths.archive: /r/JSON/STORE is inside the hot folder /r/JSON")


def test_config_error_text_names_file_and_key():
    with pytest.raises(ConfigError) as e:
        build({"paths": {"hott": "x"}}, "/etc/jw.toml")
    assert str(e.value) == "invalid configuration in /etc/jw.toml:\n  paths.hott: unknown key"


# --- loading files --------------------------------------------------------------------------------


def test_load_without_file_is_builtin(tmp_path):
    c = load(None, tmp_path)
    assert c.root == tmp_path
    assert _table(c) == EXPECTED_ROUTES


def test_twist_example_loads_with_777_and_the_builtin_routes():
    c = load(TWIST)
    assert c.permissions.file_mode == 0o777
    assert c.permissions.dir_mode == 0o777
    assert c.routes == build({}, "x").routes
    assert c.root == Path("/data/PRODUCTION")


def test_file_root_is_overridden_by_root_argument(tmp_path):
    p = write(tmp_path, 'root = "/nowhere"\n[paths]\nhot = "IN"\n')
    c = load(p, tmp_path / "r")
    assert c.root == tmp_path / "r"
    assert c.hot == tmp_path / "r" / "IN"
    assert c.archive == tmp_path / "r" / "JSON_STORE"


def test_a_destination_reaching_the_hot_folder_through_a_symlink_is_refused_at_load(tmp_path):
    root = tmp_path / "root"
    (root / "JSON").mkdir(parents=True)
    (root / "SYNC").symlink_to(root / "JSON")
    p = write(tmp_path, '[[routes]]\nname = "alias"\ndestination = "SYNC/IN"\nwhen = { ClientCode = "X" }\n')
    assert build(tomllib.loads(p.read_text()), "x", root).routes[0].destination == "SYNC/IN"  # pure: no disk
    with pytest.raises(ConfigError) as e:
        load(p, root)
    assert e.value.problems == [
        f"routes[0].destination: {root}/SYNC/IN ({root}/JSON/IN on disk) is inside the hot folder {root}/JSON, "
        "so the files delivered there would be taken again; choose a folder outside it"
    ]


def test_a_hot_folder_that_is_a_symlink_to_the_archive_is_refused_at_load(tmp_path):
    (tmp_path / "JSON_STORE").mkdir()
    (tmp_path / "JSON").symlink_to(tmp_path / "JSON_STORE")
    with pytest.raises(ConfigError) as e:
        load(None, tmp_path)
    assert e.value.source == "built-in configuration"
    (msg,) = e.value.problems
    assert msg.startswith(
        f"paths.archive: {tmp_path}/JSON_STORE is the hot folder {tmp_path}/JSON ({tmp_path}/JSON_STORE on disk)"
    )


def test_file_without_routes_keeps_seed_rules(tmp_path):
    p = write(tmp_path, "workers = 3\n")
    assert _table(load(p)) == EXPECTED_ROUTES


def test_invalid_toml_names_the_file(tmp_path):
    p = write(tmp_path, "root = \n")
    with pytest.raises(ConfigError) as e:
        load(p)
    assert e.value.source == str(p)
    assert "not valid TOML" in str(e.value)
    assert str(p) in str(e.value)


def test_missing_file_names_the_file(tmp_path):
    p = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as e:
        load(p)
    assert str(p) in str(e.value)
    assert "file not found" in str(e.value)


def test_bad_when_in_file_gives_file_and_key_path(tmp_path):
    text = TWIST.read_text().replace('when = { ClientCode = "LOREAL" }', "when = { ClientCode = true }")
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load(p)
    assert e.value.source == str(p)
    assert e.value.problems[0].startswith(
        "routes[3].when.ClientCode: expected a string, a list of strings, or a table of one operator"
    )


def test_a_fleet_names_its_store_and_instance_and_claims_in_a_folder_of_its_own(tmp_path):
    config = build({"store": {"url": "postgresql://jw@db.example:5432/workflow"}, "instance": "press-2"}, "t", tmp_path)
    assert (
        config.fleet and config.store.lease_seconds == 30 and config.store.password_env == "JSON_WORKFLOW_DB_PASSWORD"
    )
    assert config.claim_area == tmp_path / "JSON/.processing/press-2"
    assert config.log_folder == tmp_path / "JSON_PARSER_LOGS/press-2"
    alone = build({}, "t", tmp_path)
    assert not alone.fleet and alone.claim_area == tmp_path / "JSON/.processing"
    assert (
        alone.instance and build({"instance": alone.instance}, "t", tmp_path).instance == alone.instance
    )  # a safe name


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"instance": "../x"}, "instance", "letters, digits"),
        ({"instance": ".hidden"}, "instance", "starting with a letter or digit"),
        ({"instance": ""}, "instance", "1 to 63"),
        ({"store": {"url": "postgresql://jw:s3cret@db/workflow"}}, "store.url", "holds a password"),
        ({"store": {"url": "mysql://jw@db/workflow"}}, "store.url", "postgresql://"),
        ({"store": {"url": "postgresql://jw@db"}}, "store.url", "database"),
        ({"store": {"lease_seconds": 1}}, "store.lease_seconds", "greater than or equal to 2"),
    ],
)
def test_a_bad_store_or_instance_names_the_key_and_what_was_expected(data, key, words, tmp_path):
    with pytest.raises(ConfigError) as raised:
        build(data, "t", tmp_path)
    assert f"{key}: " in str(raised.value) and words in str(raised.value)
    assert "s3cret" not in str(raised.value)
