"""A stand-in for an LLM command-line tool (a real process the `cli` runner drives).

    python llm_cli.py --version      prints a version line
    python llm_cli.py PROMPT         answers PROMPT
    python llm_cli.py                answers the prompt read from stdin

The answer is the prompt itself, written in chunks of `LLM_CLI_CHUNK` characters (default 8)
with `LLM_CLI_DELAY` seconds between them (default 0). A prompt containing `FAIL` writes an
error to stderr and exits 3; one containing `HANG` prints its pid and hangs forever.

`install(directory)` writes an executable `llm` that runs this script, for settings that
need the tool itself as the command's first word (the runner's health runs `<it> --version`).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

VERSION = "llm-cli 1.2.3 (test stand-in)"


def install(directory: Path) -> Path:
    """An executable `directory/llm` that execs this script with this interpreter."""
    path = directory / "llm"
    script = shlex.join([sys.executable, str(Path(__file__).resolve())])
    path.write_text(f'#!/bin/sh\nexec {script} "$@"\n')
    path.chmod(0o755)
    return path


def main(argv: list[str]) -> int:
    if argv == ["--version"]:
        print(VERSION)
        return 0
    prompt = argv[-1] if argv else sys.stdin.read()
    if "FAIL" in prompt:
        sys.stderr.write("Error: quota exceeded for this model (429)\n")
        return 3
    if "HANG" in prompt:
        sys.stdout.write(f"pid {os.getpid()}\n")
        sys.stdout.flush()
        while True:
            time.sleep(3600)
    delay = float(os.environ.get("LLM_CLI_DELAY", "0"))
    size = int(os.environ.get("LLM_CLI_CHUNK", "8"))
    out = sys.stdout.buffer
    data = prompt.encode()
    for start in range(0, len(data), size):
        if start and delay:
            time.sleep(delay)
        out.write(data[start : start + size])
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
