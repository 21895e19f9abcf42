"""Every code block in README.md runs, as a user would run it, in a fresh folder.

A block may be preceded by `<!-- snippet: MARKS -->`:
- `server`: a real `heterolora serve` is running; its URL is in $HETEROLORA_SERVER and
  $HETEROLORA_BASE_URL, the key in $HETEROLORA_API_KEY;
- `files`: the folder holds `my-model` (a model folder: the embedded MiniLM) and `train.jsonl`;
- `exit=N`: the block ends with exit status N (a check that reports a problem);
- `dry-run`: `make` lines run as `make --dry-run` (`make test` is this very suite).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools.stack import API_KEY, REPO
from heterolora.loading import embedded_model_path
from heterolora.plans import Plan
from heterolora.samples import builtin_sample

pytestmark = pytest.mark.integration
pytest_plugins = ("stack_fixtures", "embedded_api")  # fixtures: model_root, embedded_api, user_env

BLOCK = re.compile(r"(?:<!-- snippet: (?P<marks>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)^```", re.S | re.M)
RUNNERS = {"python", "bash"}
LISTINGS = {"text"}  # a file tree or program output: shown, not run
MARKS = {"server", "files", "dry-run"}
SNIPPET_TIMEOUT_S = 300


@dataclass
class Snippet:
    line: int
    lang: str
    code: str
    marks: set[str] = field(default_factory=set)
    exit: int = 0

    @property
    def id(self) -> str:
        return f"README.md:{self.line}-{self.lang}"


def readme_snippets(text: str) -> list[Snippet]:
    out = []
    for match in BLOCK.finditer(text):
        words = re.sub(r"\(.*?\)", "", match["marks"] or "").split()  # (a parenthesis is for readers)
        marks = {w for w in words if not w.startswith("exit=")}
        code = next((int(w.removeprefix("exit=")) for w in words if w.startswith("exit=")), 0)
        line = text.count("\n", 0, match.start("code"))
        out.append(Snippet(line, match["lang"], match["code"], marks, code))
    return out


BLOCKS = readme_snippets((REPO / "README.md").read_text())
SNIPPETS = [s for s in BLOCKS if s.lang not in LISTINGS]


def test_every_readme_block_has_a_runner() -> None:
    assert len(SNIPPETS) >= 5
    for s in BLOCKS:
        assert s.lang in RUNNERS | LISTINGS, f"{s.id}: tag the block python or bash (or text for a listing)"
        assert s.marks <= MARKS, f"{s.id}: unknown marks {s.marks - MARKS}"


def prepare_files(folder: Path) -> None:
    (folder / "my-model").symlink_to(embedded_model_path(), target_is_directory=True)
    rows = builtin_sample()[:16]  # two scoring batches: enough to run the command
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def command_for(snippet: Snippet) -> list[str]:
    if "dry-run" in snippet.marks:
        targets = [shlex.split(line)[1] for line in snippet.code.splitlines() if line.startswith("make ")]
        return ["make", "--dry-run", "-C", str(REPO), *targets]
    if snippet.lang == "python":
        return [sys.executable, "-c", snippet.code]
    return ["bash", "-euo", "pipefail", "-c", snippet.code]


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_readme_snippet_runs(
    snippet: Snippet, request: pytest.FixtureRequest, user_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = user_env()
    if "server" in snippet.marks:
        url = request.getfixturevalue("embedded_api").url
        env.update(HETEROLORA_SERVER=url, HETEROLORA_BASE_URL=url, HETEROLORA_API_KEY=API_KEY)
    if "files" in snippet.marks:
        prepare_files(tmp_path)
    (tmp_path / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    res = subprocess.run(
        command_for(snippet), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=SNIPPET_TIMEOUT_S
    )
    assert res.returncode == snippet.exit, (
        f"{snippet.id} exited {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    )
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    if "plan.json" in snippet.code and "dry-run" not in snippet.marks:
        assert Plan.load(tmp_path / "plan.json").budget.used > 0  # the block wrote a valid plan
    if "--plot ranks.png" in snippet.code:
        assert (tmp_path / "ranks.png").read_bytes()[:4] == b"\x89PNG"
