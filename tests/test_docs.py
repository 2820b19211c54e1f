"""The documentation tells the truth: its examples run, its commands exist with the flags it
shows, the README stays short and no page cites internal issue numbers.

- Python: every ``python`` block of the README and of docs/compress-your-own-images.md runs
  (in a scratch folder holding the images they name), and so do the docstring examples of
  ``bitswap``, ``bitswap.api`` and ``bitswap.pillow`` (doctest).
- Shell: every command of the ``bash`` blocks (and the ``$`` lines of ``console`` blocks) of
  README.md and docs/*.md either runs (the short command-line examples in :data:`RUN`, in a
  scratch folder) or names a script of this repository whose ``--help`` lists every flag it
  uses; tools that are not ours (pip, pytest, venv, mpiexec's own flags) are named in
  :data:`EXTERNAL`, and a command that fits none of these fails the test.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

# Commands that are run, as written (short ones, on small images made by scratch()).
RUN = {
    "bitswap compress photo.png",
    "bitswap compress a.png b.pgm -o two.bsw",
    "bitswap info two.bsw",
    "bitswap decompress two.bsw",
    "bitswap decompress photo.bsw -o restored/",
    "bitswap --version",
}
# Programs that are not ours: their own options are not checked.
EXTERNAL = {"pip", "python3 -m venv", ".", "source", "python -m pytest", "cd", "export", "mpiexec", "tensorboard"}
LAUNCHERS = {"torchrun", "mpiexec", "nice"}


def fenced_blocks(path: Path, langs: tuple[str, ...]) -> list[tuple[str, str, int]]:
    """(language, text, line number) of every fenced block of ``path`` in ``langs``."""
    out, lines, k = [], path.read_text().splitlines(), 0
    while k < len(lines):
        m = re.match(r"^\s*```(\S*)\s*$", lines[k])
        if not m:
            k += 1
            continue
        end = k + 1
        while end < len(lines) and not re.match(r"^\s*```\s*$", lines[end]):
            end += 1
        assert end < len(lines), f"{path.name}:{k + 1}: unclosed code block"
        if m.group(1) in langs:
            out.append((m.group(1), "\n".join(lines[k + 1:end]), k + 1))
        k = end + 1
    return out


def commands(path: Path) -> list[tuple[list[str], str]]:
    """(argv, where) of every simple command in the shell blocks of ``path``: continuation
    lines joined, comments dropped, split at ``&&``, ``||``, ``;``, ``|`` and ``&``."""
    out = []
    for lang, text, line in fenced_blocks(path, ("bash", "console")):
        text = text.replace("\\\n", " ")
        for k, row in enumerate(text.splitlines()):
            if lang == "console":
                if not row.startswith("$ "):
                    continue
                row = row[2:]
            lex = shlex.shlex(row, posix=True, punctuation_chars=True)
            lex.whitespace_split = True
            lex.commenters = "#"
            argv = []
            for token in [*lex, ";"]:
                if token in ("&&", "||", ";", "|", "&"):
                    if argv:
                        out.append((argv, f"{path.relative_to(ROOT)}:{line + 1 + k}"))
                    argv = []
                else:
                    argv.append(token)
    return out


def test_readme_is_short_and_has_one_test_command():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    section = text.split("<!-- test-command -->")[1].split("<!-- /test-command -->")[0]
    lines = [ln for ln in section.splitlines() if ln.strip() and not ln.startswith("```")]
    assert lines == ['pip install -c .ci/constraints.txt -e ".[test]" && python -m pytest -m "not slow"']


def test_no_internal_issue_numbers():
    """Pages and code speak for themselves: no "issue N" or "#N" references."""
    files = PAGES + sorted(p for p in ROOT.rglob("*") if p.suffix in (".py", ".toml", ".md")
                           and not any(part.startswith(".") for part in p.relative_to(ROOT).parts))
    for path in sorted(set(files)):
        text = path.read_text()
        assert not re.search(r"\bissues?\b\s*#?\d", text, re.I), f"{path}: cites an issue number"
        if path.suffix == ".md":
            assert "issue" not in text.lower(), f"{path}: mentions an issue"
            assert not re.search(r"(?<![\w&])#\d", text), f"{path}: cites #N"


def test_links_resolve():
    """Every relative link of the README and the docs points at a file that is there."""
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#")[0]
            if path and not re.match(r"^[a-z]+:", path):
                assert (page.parent / path).exists(), f"{page.name}: broken link {target}"


# --------------------------------------------------------------------------- Python code

def scratch(folder: Path) -> Path:
    """The images the examples name: photo.png (RGB), a.png (grey), b.pgm (grey)."""
    from PIL import Image
    y, x = np.mgrid[0:24, 0:32]           # one 32x32 patch each: the shipped models are slow on a CPU
    grey = (128 + 60 * np.sin(x / 7) * np.cos(y / 5)).astype(np.uint8)
    Image.fromarray(np.stack([grey, grey // 2 + 60, 255 - grey], -1)).save(folder / "photo.png")
    Image.fromarray(grey).save(folder / "a.png")
    Image.fromarray(grey[:12, :20].T.copy()).save(folder / "b.pgm")
    return folder


@contextlib.contextmanager
def inside(folder: Path):
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(before)


# The README's examples are quick; the longer page's code the shipped models through more patches.
PYTHON_PAGES = [README, pytest.param(ROOT / "docs" / "compress-your-own-images.md", marks=pytest.mark.slow)]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: p.name)
def test_python_examples_run(page, tmp_path):
    blocks = fenced_blocks(page, ("python",))
    assert blocks, f"{page.name} has no python example"
    with inside(scratch(tmp_path)), contextlib.redirect_stdout(io.StringIO()):
        for _, code, line in blocks:
            exec(compile(code, f"{page.name}:{line + 1}", "exec"), {"__name__": "__example__"})


@pytest.mark.parametrize("module", ["bitswap", "bitswap.api", "bitswap.pillow"])
def test_docstring_examples(module, tmp_path):
    import importlib
    mod = importlib.import_module(module)
    with inside(tmp_path):
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result


# ---------------------------------------------------------------------------- shell code

def _program(argv: list[str]) -> tuple[str, list[str], list[str]] | None:
    """(program, its arguments, the torchrun options before it) of a command, or None for a
    tool that is not ours. The program is a script's path or ``-m MODULE`` (``bitswap`` is
    ``-m bitswap``)."""
    launcher_opts = []
    while argv and (re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]) or argv[0] in LAUNCHERS):
        if argv[0] in LAUNCHERS:                  # torchrun/mpiexec/nice [options] program ...
            name, argv = argv[0], argv[1:]
            while argv and argv[0].startswith("-"):
                opt = argv.pop(0)
                if name == "torchrun":
                    launcher_opts.append(opt)
                elif "=" not in opt and argv and not argv[0].startswith("-"):
                    argv.pop(0)                   # the value of mpiexec -np 8, nice -n 10
        else:
            argv = argv[1:]                       # VAR=value prefix
    if not argv or any(" ".join(argv).startswith(e + " ") or " ".join(argv) == e for e in EXTERNAL):
        return None
    if argv[0] == "bitswap":
        return "-m bitswap", argv[1:], launcher_opts
    if argv[0] in ("python", "python3"):
        argv = argv[1:]
    if len(argv) > 1 and argv[0] == "-m":
        return f"-m {argv[1]}", argv[2:], launcher_opts
    if argv and argv[0].endswith(".py"):
        return argv[0], argv[1:], launcher_opts
    raise AssertionError(f"not a command of this repository nor a known tool: {' '.join(argv)}")


_HELP_DRIVER = r"""
import contextlib, io, json, runpy, sys
out = []
for program, argv in json.loads(sys.argv[1]):
    buf = io.StringIO()
    sys.argv = [program, *argv]
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            if program.startswith("-m "):
                runpy.run_module(program[3:], run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(program, run_name="__main__")
    except SystemExit:
        pass
    out.append(buf.getvalue())
print(json.dumps(out))
"""


def _helps(requests: list[tuple[str, tuple[str, ...]]]) -> dict:
    """``program *argv`` of every request (``--help`` calls), in one subprocess: torch is
    imported once, and the scripts' side effects stay out of the test process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    p = subprocess.run([sys.executable, "-c", _HELP_DRIVER, json.dumps(requests)],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return dict(zip(requests, json.loads(p.stdout.strip().splitlines()[-1])))


def _flags(args: list[str]) -> list[str]:
    return [a.split("=")[0] for a in args if re.match(r"^--?[A-Za-z]", a)]


def _help_request(program: str, args: list[str]) -> tuple[str, tuple[str, ...]]:
    """``program`` with its leading positional arguments (a subcommand, a model family) and --help."""
    lead = []
    for a in args:
        if a.startswith("-"):
            break
        lead.append(a)
    return program, (*lead, "--help")


def _documented() -> tuple[list, list]:
    """(commands to run, (program, where) to check) over every page, in order of appearance."""
    runs, checks = [], []
    for page in PAGES:
        for argv, where in commands(page):
            if " ".join(argv) in RUN:
                runs.append((argv, where))
            elif (prog := _program(list(argv))) is not None:
                checks.append((prog, where))
    return runs, checks


def test_command_line_examples_run(tmp_path, capsys):
    """The command-line examples of the README and docs run as written, in order, in a
    scratch folder holding the images they name (each command once)."""
    from bitswap.__main__ import main
    runs, _ = _documented()
    assert {" ".join(a) for a, _ in runs} == RUN
    done = set()
    with inside(scratch(tmp_path)):
        for argv, where in runs:
            if " ".join(argv) in done:
                continue
            done.add(" ".join(argv))
            if argv[1:] == ["--version"]:
                with pytest.raises(SystemExit) as stop:
                    main(argv[1:])
                assert stop.value.code == 0 and "bitswap" in capsys.readouterr().out
            else:
                assert main(argv[1:]) == 0, (where, capsys.readouterr().err)
        assert {p.name for p in Path("two").iterdir()} == {"a.png", "b.png"}
        assert (Path("restored") / "photo.png").is_file()


@pytest.mark.slow
def test_documented_commands_exist_with_their_flags():
    """Every other command of the pages names a script or module of this repository whose
    --help lists every flag the command uses (torchrun's own options: torchrun's --help)."""
    _, checks = _documented()
    assert checks
    for (program, args, _), where in checks:
        assert program.startswith("-m ") or (ROOT / program).is_file(), f"{where}: {program} does not exist"
    requests = sorted({_help_request(p, a) for (p, a, _), _ in checks if _flags(a)}
                      | ({("-m torch.distributed.run", ("--help",))} if any(lo for (_, _, lo), _ in checks) else set()))
    helps = _helps(requests)
    for (program, args, launcher), where in checks:
        for flags, request in ((_flags(args), _help_request(program, args)),
                               (_flags(launcher), ("-m torch.distributed.run", ("--help",)))):
            for flag in flags:
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps[request]), \
                    f"{where}: {flag} is not an option of {program} (its --help does not list it)"
