"""The README runs as written: its ```sh blocks and its Python client example run in order, in
one bash session (`set -eEuo pipefail`, variables carried from block to block as in a reader's
terminal), against `agenthub serve` started in an empty directory.

What the test changes, and why:
- the server listens on a free port, and `localhost:8000` / `127.0.0.1:8000` in the blocks are
  rewritten to it (a server or test already on 8000 must not answer instead);
- `curl` fails on an HTTP error (`--fail-with-body`), so a 4xx/5xx answer fails its block;
- a command failing inside `$(...)` fails its block too (bash's `set -e` overlooks it when the
  substitution is an argument, as in `echo "$(agenthub token ...)"`): an ERR trap, inherited by
  subshells, records every failure;
- the set-up block (`make serve`, `make test`) is not run: it would install and run this suite
  again. Instead, each of its targets must have a recipe (`make -nB` prints it without running
  it), `make serve` installs no test tools, and the server the test starts is the command
  `make serve` ends with, in the directory the blocks run in, which has the checkout's `.venv`
  and the same (empty) environment: the CLI sees the server's database;
- the Python client example runs as `.venv/bin/python <file>` in that directory.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from processes import clean_env, server_process

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
RUN = {"sh", "python"}
SHELLS = {"bash", "shell", "console", "zsh"}  # write these as ```sh, or they would not run
README_PORT = re.compile(r"\b(localhost|127\.0\.0\.1):8000\b")
BLOCK_SECONDS = 120  # far above any block's run time: reaching it means the block hangs
PRELUDE = """set -eEuo pipefail
shopt -s inherit_errexit
trap 'echo "exit status $? from: $BASH_COMMAND" >>{failures}' ERR
curl() {{ command curl --fail-with-body "$@"; }}
"""


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # of the opening fence in README.md

    @property
    def is_setup(self) -> bool:
        commands = [c for c in self.code.splitlines() if c.strip()]
        return self.language == "sh" and all(c.startswith("make ") for c in commands)

    def make_targets(self) -> list[str]:
        return [c.split()[1] for c in self.code.splitlines() if c.strip()]


def readme_blocks() -> list[Block]:
    text = (ROOT / "README.md").read_text()
    blocks = [Block(m[1], m[2], text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]
    unrun = [f"line {b.line}: {b.language}" for b in blocks if b.language in SHELLS]
    assert not unrun, f"README.md shell blocks must be tagged sh: {unrun}"
    return [b for b in blocks if b.language in RUN]


def reader_env() -> dict[str, str]:
    """No AGENTHUB_* setting, and no virtualenv on PATH: a reader who ran `make serve`."""
    venv_bin = Path(sys.prefix, "bin").resolve()
    env = clean_env()
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if p and Path(p).resolve() != venv_bin
    )
    return env


class BlockFailed(AssertionError):
    pass


class Terminal:
    """One bash session that runs blocks one after another; their output goes to `transcript`."""

    def __init__(self, cwd: Path, env: dict[str, str], scratch: Path) -> None:
        self.transcript = scratch / "transcript.txt"
        self.transcript.touch()
        self.failures = scratch / "failed-commands.txt"
        self.failures.touch()
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.done: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_markers, daemon=True).start()
        self._send(PRELUDE.format(failures=self.failures))

    def _read_markers(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.done.put(line.strip())
        self.done.put(None)

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def run(self, number: int, command: str, block: Block) -> None:
        """Run `command` (a script's path or a command line) and wait for its end marker."""
        start = self.transcript.stat().st_size
        self._send(f"{command} </dev/null >>{self.transcript} 2>&1\necho done-{number}\n")
        try:
            marker = self.done.get(timeout=BLOCK_SECONDS)
        except queue.Empty:
            self.close()
            raise self._failure(block, start, f"still running after {BLOCK_SECONDS} s") from None
        if marker != f"done-{number}":
            self.proc.wait()
            raise self._failure(block, start, f"exit status {self.proc.returncode}")
        if failed := self.failures.read_text():
            raise self._failure(block, start, failed)

    def _failure(self, block: Block, start: int, what: str) -> BlockFailed:
        with self.transcript.open() as handle:
            handle.seek(start)
            output = handle.read()
        return BlockFailed(
            f"README.md block at line {block.line}: {what}\n{block.code}\n--- output ---\n{output}"
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        assert self.proc.stdin is not None
        self.proc.stdin.close()


@contextmanager
def terminal(cwd: Path, env: dict[str, str], scratch: Path) -> Iterator[Terminal]:
    session = Terminal(cwd, env, scratch)
    try:
        yield session
    finally:
        session.close()


def check_setup(block: Block) -> None:
    """Each `make` target of the set-up block has a recipe; `make serve` installs the runtime
    dependencies only and runs `agenthub serve`."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    for target in block.make_targets():
        recipe = subprocess.run(
            ["make", "-nB", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert recipe.returncode == 0, (
            f"make {target} (README.md line {block.line}): {recipe.stderr}"
        )
        if target == "serve":
            assert "--extra" not in recipe.stdout, recipe.stdout
            assert recipe.stdout.splitlines()[-1].endswith("bin/agenthub serve"), recipe.stdout


def test_every_block_of_the_readme_runs_against_a_fresh_server(tmp_path: Path) -> None:
    blocks = readme_blocks()
    assert [b for b in blocks if b.is_setup], "the set-up block (make serve, make test) is gone"
    assert [b for b in blocks if b.language == "python"], "the Python client example is gone"
    workdir, scratch = tmp_path / "reader", tmp_path / "scratch"
    workdir.mkdir()
    scratch.mkdir()
    (workdir / ".venv").symlink_to(sys.prefix)  # the checkout's virtualenv, as `make` made it
    env = reader_env()
    with server_process(workdir, env) as server, terminal(workdir, env, scratch) as shell:
        for number, block in enumerate(blocks):
            if block.is_setup:
                check_setup(block)
                continue
            code = README_PORT.sub(rf"\g<1>:{server.port}", block.code)
            assert ":8000" not in code, f"README.md line {block.line}: another address on 8000"
            script = scratch / f"block-{number}.{block.language}"
            script.write_text(code)
            command = f"source {script}" if block.language == "sh" else f".venv/bin/python {script}"
            shell.run(number, command, block)
