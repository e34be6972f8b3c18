"""Every console transcript in README.md and docs/*.md is what the program prints.

A transcript is a fenced block opened with ```console. Its lines that begin with `$ ` are
commands; the lines after each one, up to the next command, are what it printed (stdout
and stderr together, as a terminal shows them). Each block runs in a fresh, empty working
folder, its commands one after another in one `bash -c`, so a later command can read what
an earlier one wrote (`python -m runner.report` after a run) and `$ echo $?` shows the exit
code of the command before it.

Some things change from run to run; they are masked on both sides before comparing:
dates and times, run folder names (time and process id), durations, digests, versions,
addresses and the machine. The temporary working folder is written as /home/you/demo and
this checkout as /home/you/runner, which is where a reader would have them.

    UPDATE_DOCS=1 python -m pytest tests/test_docs.py

runs every block and writes what the commands print now back into the page.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import pytest

from tests.helpers import ROOT, command_env

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
OPEN, CLOSE = "```console", "```"
PROMPT = "$ "
WORKDIR = "/home/you/demo"  # how a page shows the temporary working folder
CHECKOUT = "/home/you/runner"  # ... and this checkout
UPDATE = os.environ.get("UPDATE_DOCS") == "1"


@dataclass(frozen=True)
class Transcript:
    page: Path
    body: str  # the lines between the fences, as the page has them
    commands: Tuple[Tuple[str, str], ...]  # (command, what the page says it printed)

    @property
    def id(self) -> str:
        more = f" (+{len(self.commands) - 1})" if len(self.commands) > 1 else ""
        return f"{self.page.relative_to(ROOT)}: {self.commands[0][0]}{more}"


def transcripts(page: Path) -> List[Transcript]:
    """The console blocks of a page, in page order."""
    lines = page.read_text().splitlines()
    found = []
    i = 0
    while i < len(lines):
        if lines[i] == OPEN:
            end = lines.index(CLOSE, i + 1)
            body = lines[i + 1 : end]
            found.append(Transcript(page, "\n".join(body), _commands(page, body)))
            i = end
        i += 1
    return found


def _commands(page: Path, body: List[str]) -> Tuple[Tuple[str, str], ...]:
    if not body or not body[0].startswith(PROMPT):
        raise ValueError(f"{page.name}: a console block must start with '{PROMPT}<command>': {body[:1]}")
    commands: List[Tuple[str, List[str]]] = []
    for line in body:
        if line.startswith(PROMPT):
            commands.append((line[len(PROMPT) :], []))
        else:
            commands[-1][1].append(line)
    return tuple((cmd, "\n".join(out)) for cmd, out in commands)


ALL = [t for page in PAGES for t in transcripts(page)]


def run(t: Transcript, tmp_path: Path) -> List[Tuple[str, str]]:
    """Run the block's commands in a fresh folder; return (command, what it printed)."""
    workdir, printed = tmp_path / "demo", tmp_path / "printed"
    workdir.mkdir()
    printed.mkdir()
    # One bash for the whole block, each command's stdout and stderr into one file of its
    # own: the output stays apart per command, and `$?` carries over to `echo $?`.
    script = "\n".join(
        f"{{\n{cmd}\n}} > {shlex.quote(str(printed / str(k)))} 2>&1" for k, (cmd, _) in enumerate(t.commands)
    )
    # Unbuffered: a terminal shows stdout and stderr lines in the order they were printed,
    # while a buffered pipe would hold stdout back until the end.
    env = command_env({"PYTHONUNBUFFERED": "1"})
    subprocess.run(["bash", "-c", script], cwd=workdir, env=env, timeout=600, check=False)
    out = []
    for k, (cmd, _) in enumerate(t.commands):
        text = (printed / str(k)).read_text()
        for real, shown in ((str(workdir.resolve()), WORKDIR), (str(workdir), WORKDIR), (str(ROOT), CHECKOUT)):
            text = text.replace(real, shown)
        out.append((cmd, "\n".join(line.rstrip() for line in text.rstrip("\n").splitlines())))
    return out


def render(commands) -> str:
    return "\n".join(f"{PROMPT}{cmd}" + (f"\n{out}" if out else "") for cmd, out in commands)


# What differs between two runs of the same command, in the order applied.
MASKS = [
    # lines of `runner.report` that describe the machine and the checkout's git state
    (re.compile(r"^(command|machine|configs):.*$", re.M), r"\1: <machine>"),
    (re.compile(r"events\.out\.tfevents\.\S+"), "events.out.tfevents.<time>.<host>.<pid>"),
    (re.compile(r"\d{2}-\d{2}-\d{2}-\d{6}-\d+"), "<time>-<pid>"),  # a run folder's name
    (re.compile(r"\d{4}-\d{2}-\d{2}"), "<date>"),
    (re.compile(r"\d{4}/\d{2}/\d{2}"), "<date>"),  # MLflow's own log lines (making a database's tables)
    (re.compile(r"\d{2}:\d{2}:\d{2}(,\d+)?"), "<time>"),
    (re.compile(r"\d+(\.\d+)? (s|ms|min|h)\b"), "<duration>"),
    (re.compile(r"\b(?=[0-9a-f]*[a-f])[0-9a-f]{12,64}\b"), "<digest>"),
    (re.compile(r"\b0x[0-9a-f]+\b"), "<address>"),
    (re.compile(r"\b\d+\.\d+\.\d+\b"), "<version>"),
    # tables pad their columns to the widest cell, which a masked duration can change
    (re.compile(r"[ \t]+"), " "),
]


def mask(text: str) -> str:
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return "\n".join(line.strip() for line in text.splitlines())


def test_masks_hide_only_what_changes_between_runs():
    # two real lines of the same command on different days, machines and loads
    one = (
        "[2026-12-01 21:40:48,024][HYDRA] Launching 3 jobs locally\n"
        "  #0   experiment=seed_cubic point.x=1.0  ok      as declared  3.0    passed       4.53 s\n"
        "run folder: /home/you/demo/outputs/2026-12-01/21-39-52-655001-9064\n"
        "[1/3] #0 experiment=seed_cubic point.x=1.0: ok | failed 0 | 4.8 s elapsed, ~9.6 s left\n"
        "versions:   python 3.11.7, tensorflow 2.21.0\n"
        "configs:    /home/you/runner/conf: git aeaeed2d22db (dirty)\n"
        "files:      events.out.tfevents.1796161269.vm.10554.0, results.json\n"
        "2026/12/02 06:49:43 INFO mlflow.store.db.utils: Creating initial MLflow database tables...\n"
        "mlflow run: 060caa208628421aaf0aab3af67bca3a (experiment 1) at sqlite:///mlflow.db"
    )
    two = (
        "[2027-01-02 03:04:05,678][HYDRA] Launching 3 jobs locally\n"
        "  #0   experiment=seed_cubic point.x=1.0  ok      as declared  3.0    passed       14.53 s\n"
        "run folder: /home/you/demo/outputs/2027-01-02/03-04-05-000001-17\n"
        "[1/3] #0 experiment=seed_cubic point.x=1.0: ok | failed 0 | 12.0 s elapsed, ~1.2 min left\n"
        "versions:   python 3.12.1, tensorflow 2.22.1\n"
        "configs:    /home/you/runner/conf: git 0123456789ab\n"
        "files:      events.out.tfevents.1700000000.host.1.0, results.json\n"
        "2027/01/02 03:04:05 INFO mlflow.store.db.utils: Creating initial MLflow database tables...\n"
        "mlflow run: ac6595c6d6cb46fb9222f169ddb9d3e0 (experiment 1) at sqlite:///mlflow.db"
    )
    assert mask(one) == mask(two)
    # ... and nothing that a run computes
    assert mask("dy/dx = 75.0") != mask("dy/dx = 75.1")
    assert mask("sweep: 3 jobs, 0 failed") != mask("sweep: 3 jobs, 1 failed")
    assert mask("mlflow run: 0a (experiment 1)") != mask("mlflow run: 0a (experiment 2)")


def anchors(page: Path) -> set:
    """The anchors GitHub makes of a page's headings: lower case, punctuation dropped, spaces as -."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_page_link_leads_somewhere():
    # pages link to one another, to headings and to files of the checkout by relative paths
    link = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")
    broken = []
    for page in PAGES:
        for target, anchor in link.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path = (page.parent / target) if target else page
            if not path.exists() or (anchor and path.is_file() and anchor not in anchors(path)):
                broken.append(f"{page.relative_to(ROOT)}: {target}#{anchor}")
    assert not broken


@pytest.mark.slow
@pytest.mark.parametrize("transcript", ALL, ids=[t.id for t in ALL])
def test_transcript_is_what_the_program_prints(transcript, tmp_path):
    got = run(transcript, tmp_path)
    if UPDATE:
        text = transcript.page.read_text()
        old = f"{OPEN}\n{transcript.body}\n{CLOSE}"
        assert old in text, f"the block moved while the tests ran: {transcript.id}"
        transcript.page.write_text(text.replace(old, f"{OPEN}\n{render(got)}\n{CLOSE}", 1))
        return
    want, have = mask(render(transcript.commands)), mask(render(got))
    diff = "\n".join(difflib.unified_diff(want.splitlines(), have.splitlines(), "page", "program", lineterm=""))
    if want != have:
        pytest.fail(
            f"{transcript.id}: the page differs from what the program prints (masked; "
            f"UPDATE_DOCS=1 python -m pytest tests/test_docs.py rewrites it):\n{diff}",
            pytrace=False,
        )


# Paths of the repository a page names (`runner/tape/program.py`, `conf/experiment/x.yaml`).
_PATH = re.compile(r"\b(?:runner|hydra_plugins|tests|benchmarks|conf)/[A-Za-z0-9_./-]+\.(?:py|yaml|md|csv)\b")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name if p.parent.name != "docs" else f"docs/{p.name}")
def test_every_file_a_page_names_exists(page):
    named = set(_PATH.findall(page.read_text()))
    missing = sorted(n for n in named if not (ROOT / n).exists() and "NAME" not in n)
    assert missing == []


def test_the_function_list_in_configs_is_the_function_table():
    from runner.language.functions import TABLE

    text = (ROOT / "docs" / "configs.md").read_text()
    listed = re.search(r"calls of these functions: `([^`]+)`", text)
    assert listed is not None
    assert listed.group(1).split() == list(TABLE)
