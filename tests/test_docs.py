"""README and docs/ are true: every relative link resolves, and every Python snippet and shell command runs on
the toy data. A block that needs what no test machine has (a real dataset, a download, docker, minutes of
measurement) carries ``<!-- needs: REASON -->`` on the line before it and is the only kind skipped; a block
with ``<!-- test appends: ARGS -->`` runs with ARGS appended to each command (a shorter schedule)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
NEEDS = ("real data", "download", "docker and the tensorflow/serving image", "minutes of measurement")
_BLOCK = re.compile(r"(?:<!-- (needs|test appends): ([^>]*?) -->\n)?```(\w*)\n(.*?)```", re.S)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def blocks():
    """(page, line, language, code, needs, appended) of every fenced block of every page."""
    for page in PAGES:
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            kind, value, language, code = match.groups()
            line = text[: match.start(3)].count("\n") + 1
            yield (page, line, language, code, value if kind == "needs" else None,
                   value if kind == "test appends" else "")


def commands(code: str, appended: str = "") -> list[str]:
    """The shell commands of a bash block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        found.append(f"{line} {appended}".strip() if "#" not in line else _append_before_comment(line, appended))
    return found


def _append_before_comment(line: str, appended: str) -> str:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
    lexer.commenters = "#"
    lexer.whitespace_split = True
    words = list(lexer)
    return shlex.join(words + shlex.split(appended))


def runnable():
    """Each snippet and command once (the README repeats some of the pages' commands word for word)."""
    cases, seen = [], set()
    for page, line, language, code, needs, appended in blocks():
        if needs is None and language == "python":
            cases.append(pytest.param("python", code, id=f"{page.name}:{line}"))
        elif needs is None and language == "bash" and not (page.name == "README.md" and line < 10):
            for index, command in enumerate(commands(code, appended)):
                key = shlex.split(command, comments=True)
                if tuple(key) not in seen:
                    seen.add(tuple(key))
                    cases.append(pytest.param("bash", command, id=f"{page.name}:{line}:{index}"))
    return cases


def test_pages_open_with_what_a_user_wants_to_do_and_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    for page in PAGES[1:]:
        lines = [line for line in page.read_text().splitlines() if line.strip()]
        assert lines[0].startswith("# ") and lines[1].startswith("You want"), page.name


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in _LINK.findall(page.read_text()):
            if "://" in target or target.startswith("#") or target.startswith("mailto:"):
                continue
            if not (page.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []


def test_every_skip_says_why_from_the_known_reasons():
    reasons = [needs for *_, needs, _ in blocks() if needs is not None]
    assert reasons and set(reasons) <= set(NEEDS), reasons
    assert len(runnable()) >= 15  # the toy commands and snippets really run


def test_commands_are_parsed_as_a_shell_reads_them():
    code = "python tools/a.py x \\\n    --y 1   # note\n# comment\npython tools/b.py \"a b/*.png\"\n"
    assert commands(code, "--max-iters 2") == ["python tools/a.py x --y 1 --max-iters 2",
                                               "python tools/b.py \"a b/*.png\" --max-iters 2"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder laid out as a checkout the commands run in: tools/ and benchmarks/ of this one, the toy data,
    and ``work_dirs/toy/best.weights.h5`` (the toy config's training view, as the quickstart leaves it)."""
    folder = tmp_path_factory.mktemp("docs")
    for name in ("tools", "benchmarks", "docs"):
        (folder / name).symlink_to(ROOT / name)
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python"  # `python` in a command is this interpreter (a symlink would lose its venv)
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    script = ("import keras_mv2seg\nfrom keras_mv2seg.data import make_toy_dataset\n"
              "cfg = keras_mv2seg.get_config('toy')\nmake_toy_dataset(cfg.data.data_root)\n"
              "keras_mv2seg.save_weights(keras_mv2seg.build_segmenter(cfg, auxiliary=True), "
              "'work_dirs/toy/best.weights.h5', cfg)\n")
    subprocess.run([sys.executable, "-c", script], cwd=folder, check=True, capture_output=True, timeout=600)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(ROOT)}
    return folder, env


@pytest.mark.heavy
@pytest.mark.parametrize("language, code", runnable())
def test_snippet_or_command_runs(workspace, language, code):
    folder, env = workspace
    argv = [sys.executable, "-c", code] if language == "python" else ["bash", "-c", code]
    done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{code}\nexit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
