"""The README's "Your first hot folder", run as written: its shell blocks in order, as real subprocesses of the
installed json-workflow, in a trial root under a temporary HOME; every output it shows, and the places it names.

How the section is read: a ```toml and a ```json block must be examples/minimal.toml and examples/job.json,
whole. A ```sh block is run by bash in a copy of the repository's examples/ (the `export` lines of earlier
blocks first, as a second terminal is told to set them again). A block that is only `json-workflow run` or
`json-workflow dashboard` is the long-running one of a terminal: it runs in the background until the README
stops it with Ctrl+C (SIGINT here), before the next `run --once` or long-running command and at the end. A
```text block is what the terminals show: each of its lines (but `...`) must be a line of the last block's
output or of a background command's, once times, durations, pids and the instance's name are masked, with
/home/you as this HOME and http://127.0.0.1:8787/ as the address the log names. The copied configuration
listens on port 0 (a free one), as a test beside others must; the README keeps the default.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import cli, wait_for

REPO = Path(__file__).parent.parent
README = REPO / "README.md"
MINIMAL = REPO / "examples" / "minimal.toml"
JOB = REPO / "examples" / "job.json"
LOGROTATE = REPO / "deploy" / "json-workflow.logrotate"

README_HOME = "/home/you"
README_URL = "http://127.0.0.1:8787/"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
LONG_RUNNING = re.compile(r"json-workflow (run|dashboard)(?!.*--once)( .*)?")
# Blocks that change nothing may be run again while the text after them is awaited (status's counts, say).
READ_ONLY = ("json-workflow explain ", "json-workflow status", "json-workflow history ", "find ", "cat ")
URL_LINE = re.compile(r"health checks at (http://\S+/)")
MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), "<time>"),
    (re.compile(r"\d{4}-\d\d-\d\d"), "<date>"),
    (re.compile(r"\d{8}_\d{6}"), "<stamp>"),
    (re.compile(r"\d+(\.\d+)? ?m?s\b"), "<duration>"),
    (re.compile(r"worker-\d+"), "worker-N"),
    (re.compile(r"#\d+\b"), "#N"),
    (re.compile(r"\(pid \d+, [^)]+\)"), "(pid, instance)"),
    (re.compile(r"as instance [^:]+:"), "as instance NAME:"),
]


def section(title: str = "Your first hot folder") -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def masked(line: str) -> str:
    for pattern, replacement in MASKS:
        line = pattern.sub(replacement, line)
    return line.rstrip()


def commands(body: str) -> list[str]:
    """The block's command lines, comments and blank lines left out."""
    lines = (re.sub(r"\s+#.*$", "", line).strip() for line in body.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


class Background:
    """A terminal's long-running command, its output in a file."""

    def __init__(self, command: str, walk: Walkthrough):
        self.command = command
        self.log = walk.tmp / f"background-{len(walk.finished) + 1}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                ["bash", "-c", walk.prelude() + "exec " + command],
                cwd=walk.cwd,
                env=walk.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def url(self) -> str:
        return wait_for(lambda: URL_LINE.search(self.text()), what=f"the address of {self.command}").group(1)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class Walkthrough:
    """The section's blocks, run in order in a trial HOME."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.home = tmp / "home"
        self.cwd = tmp / "repository"
        self.home.mkdir()
        (self.cwd / "examples").mkdir(parents=True)
        shutil.copy(JOB, self.cwd / "examples" / "job.json")
        (self.cwd / "examples" / "minimal.toml").write_text(MINIMAL.read_text() + '\n[http]\nlisten = "127.0.0.1:0"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("JSON_WORKFLOW_")}
        self.env = {**env, "HOME": str(self.home), "TZ": "UTC", "PATH": f"{bin_folder(tmp)}:{env.get('PATH', '')}"}
        self.exports: list[str] = []
        self.running: Background | None = None
        self.finished: list[Background] = []
        self.last: str = ""  # the last foreground block
        self.output = ""
        self.found: list[Path] = []  # the places a `find` block's output names

    def prelude(self) -> str:
        return "".join(f"{line}\n" for line in self.exports)

    def shell(self, body: str) -> str:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.prelude() + body],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{body}\nexit {done.returncode}\n{done.stdout}{done.stderr}"
        return done.stdout + done.stderr

    def run(self, body: str) -> None:
        lines = commands(body)
        if len(lines) == 1 and LONG_RUNNING.fullmatch(lines[0]):
            self.stop()
            self.running = Background(lines[0], self)
            self.last, self.output = "", ""
        else:
            if any("json-workflow run --once" in line for line in lines):
                self.stop()  # the README stops the service first (Ctrl+C): one run at a time on a root
            self.output = self.shell(body)
            self.last = body
        self.exports += [line for line in lines if line.startswith("export ")]

    def expect(self, text: str) -> None:
        """Every line of `text` is on the terminals, within a deadline (read-only blocks run again meanwhile)."""
        if README_URL in text:
            text = text.replace(README_URL, self.running.url())
        raw = [line.replace(README_HOME, str(self.home)) for line in text.splitlines() if line != "..."]
        wanted = [masked(line) for line in raw]
        again = self.last and all(line.startswith(READ_ONLY) for line in commands(self.last))
        missing: list[str] = []

        def shown() -> bool:
            nonlocal missing
            if again and missing:
                self.output = self.shell(self.last)
            screens = self.output + (self.running.text() if self.running else "")
            lines = {masked(line) for line in screens.splitlines()}
            missing = [line for line in wanted if line not in lines]
            return not missing

        try:
            wait_for(shown, timeout=20, what="the README's output")
        except AssertionError:
            raise AssertionError(f"not shown: {missing}\nafter:\n{self.last}\noutput:\n{self.output}") from None
        if self.last.startswith("find "):
            self.found += [Path(line) for line in raw if line.startswith(str(self.home))]

    def stop(self) -> None:
        """Ctrl+C in the terminal of the running command, once its pages were seen: it exits 0."""
        if self.running is None:
            return
        background, self.running = self.running, None
        self.finished.append(background)
        check_pages(background)
        background.process.send_signal(signal.SIGINT)
        assert background.process.wait(timeout=30) == 0, background.text()


def bin_folder(tmp: Path) -> Path:
    """Where `json-workflow` is: beside this Python (a virtual environment), else a stand-in running it."""
    folder = Path(sys.executable).parent
    if (folder / "json-workflow").exists():
        return folder
    shim = tmp / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "json-workflow").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m json_workflow "$@"\n')
    (shim / "json-workflow").chmod(0o755)
    return shim


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def check_pages(background: Background) -> None:
    """The dashboard the README opens: the overview, and the file history finding the job by its number."""
    url = background.url()
    number = json.loads(JOB.read_text())["JobSpecification"]["JobDetails"]["JobNumber"]
    assert "<html" in get(url)
    wait_for(lambda: "ACME/job.json" in get(f"{url}files?q={number}"), what="the job in the file history page")
    if "dashboard" in background.command:
        assert "broken.json" in get(f"{url}failed")


@pytest.mark.timeout(180)
def test_your_first_hot_folder_as_written(tmp_path):
    text = section()
    assert "Ctrl+C" in text  # how the README stops what runs in a terminal, as the test does with SIGINT
    walk = Walkthrough(tmp_path)
    try:
        for language, body in blocks(text):
            if language == "toml":
                assert body == MINIMAL.read_text()
            elif language == "json":
                assert body == JOB.read_text()
            elif language == "sh":
                walk.run(body)
            elif language == "text":
                walk.expect(body)
            else:
                raise AssertionError(f"a ```{language} block in the walkthrough: say how it is checked")
        walk.stop()
    finally:
        for background in [walk.running, *walk.finished]:
            if background is not None:
                background.kill()
    # The places the README lists hold the job, byte for byte; nothing is left in the hot folder.
    assert len(walk.found) == 3
    for place in walk.found:
        assert place.read_bytes() == JOB.read_bytes(), place
    trial = walk.home / "json-workflow-trial"
    assert list((trial / "JSON" / "ACME").iterdir()) == []
    assert [p.name for p in (trial / "JSON_FAILED" / "ACME").iterdir() if p.name.endswith("_broken.json")]
    assert len(walk.finished) == 2  # the service and the dashboard alone, both stopped with exit 0


def test_the_readme_shows_the_example_files_whole():
    shown = dict(blocks(section()))
    assert shown["toml"] == MINIMAL.read_text()
    assert shown["json"] == JOB.read_text()
    json.loads(shown["json"])


def test_the_minimal_configuration_passes_check_config():
    done = cli("check-config", "--config", str(MINIMAL))
    assert done.returncode == 0, done.stderr
    assert f"configuration: {MINIMAL} (valid)" in done.stdout
    assert "routes (3)" in done.stdout


def test_the_readme_shows_the_logrotate_rule_deploy_gives():
    (rule,) = re.findall(
        r"^/data/PRODUCTION/JSON_PARSER_LOGS/json_workflow\.log \{\n.*?\n\}$", LOGROTATE.read_text(), re.S | re.M
    )
    assert f"```\n{rule}\n```" in section("Everyday operations")
