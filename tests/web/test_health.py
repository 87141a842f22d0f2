"""/healthz and /readyz from a Monitor in this process: a stuck main loop, a dead watcher."""

from __future__ import annotations

import json
import time

import pytest

from conftest import make_config
from json_workflow.monitor.live import Monitor
from json_workflow.store import SqliteStore
from json_workflow.web.server import WebServer, bind
from json_workflow.web.view import View
from web_client import request


@pytest.fixture
def served(root):
    config = make_config(root, http={"listen": "127.0.0.1:0"})
    (root / "JSON_PARSER_STATE").mkdir()
    monitor = Monitor(config, "test")
    server = WebServer(
        View(lambda: config, SqliteStore(root / "JSON_PARSER_STATE"), monitor), config.http, bind(config.http)
    )
    server.start()
    yield monitor, server.url
    server.stop()


def test_healthz_fails_when_the_main_loop_has_not_turned_for_a_minute(served):
    monitor, url = served
    monitor.turn(0, 0, 0, True)
    assert request(url + "healthz").status == 200
    monitor.beat = time.time() - 61
    stuck = request(url + "healthz")
    assert stuck.status == 503 and "no turn for 61s" in stuck.body
    assert json.loads(request(url + "readyz").body)["checks"]["main_loop"]["status"] == "failing"
    monitor.turn(0, 0, 0, True)
    assert request(url + "healthz").status == 200


def test_readyz_fails_when_the_watcher_is_dead(served):
    monitor, url = served
    monitor.turn(0, 0, 0, watcher_alive=False)
    ready = request(url + "readyz")
    assert ready.status == 503
    assert json.loads(ready.body)["checks"]["watcher"] == {"status": "failing", "detail": "inotify watch stopped"}
