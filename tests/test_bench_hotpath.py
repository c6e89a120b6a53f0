"""`bench/hotpath.py --smoke` as CI runs it: agenthub and the raw-stack baseline under the
open loop, the closed loop and the login burst, with no failed request. No figure is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from processes import clean_env

pytestmark = pytest.mark.slow

HOTPATH = Path(__file__).resolve().parents[1] / "bench" / "hotpath.py"
TIMEOUT_S = 180


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_smoke_run_answers_every_request(
    db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if db == "postgres":
        request.getfixturevalue("postgres_url")  # skips, or fails in CI, without PostgreSQL
    report = tmp_path / "hotpath.json"
    done = subprocess.run(
        [sys.executable, str(HOTPATH), "--smoke", "--db", db, "--json", str(report)],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(report.read_text())
    assert result["failures"] == []
    runs = result["databases"][db]["runs"]
    assert {(run["server"], run["mode"]) for run in runs} == {
        (server, mode) for server in ("agenthub", "baseline") for mode in ("open", "closed")
    }
    for run in runs:
        where = f"{run['server']} {run['mode']}"
        assert run["completed"] > 0, where
        assert run["error_count"] == 0, where
        assert {op: figures["completed"] > 0 for op, figures in run["operations"].items()} == {
            "append": True,
            "page": True,
            "session": True,
        }, where
    burst = result["databases"][db]["login_burst"]
    assert burst["ok"] + burst["unavailable"] == burst["logins"] == 5
    assert burst["other"] == {}
    assert burst["reader"]["completed"] > 0
    assert burst["reader"]["error_count"] == 0
    assert "ratio agenthub / baseline" in done.stdout
