"""``python -m knit_provider normalize``: what it prints and its exit status."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from normalize_landing import Lander

from knit_provider.__main__ import main
from knit_provider.settings import Schemas


def cli(pg_url: str, schemas: Schemas, *args: str) -> int:
    return main(
        [
            "--database-url",
            pg_url,
            "--landing-schema",
            schemas.landing,
            "--target-schema",
            schemas.target,
            "normalize",
            *args,
        ]
    )


def test_normalize_by_id_and_pending(
    pg_url: str, schemas: Schemas, lander: Lander, capsys: pytest.CaptureFixture[str]
) -> None:
    r1, r2 = lander.run(), lander.run()
    r1.new("a1")
    r1.new("a2")
    r1.complete()
    r2.deleted("a1")
    r2.complete()
    assert cli(pg_url, schemas, "--run-id", r1.run_id) == 0
    out = capsys.readouterr().out
    assert f"run {r1.run_id}: 2 record events, 2 applications (2 changed)" in out
    assert f"reconciled: run {r1.run_id}: 2 record events landed, Knit emitted 2 and saw 2 consumed: ok" in out

    assert cli(pg_url, schemas, "--pending") == 0
    assert f"run {r2.run_id}: 1 record events" in capsys.readouterr().out
    assert cli(pg_url, schemas, "--pending") == 0
    assert capsys.readouterr().out.strip() == "nothing to normalize"


def test_refusals_and_shortfalls_set_the_exit_status(
    pg_url: str, schemas: Schemas, lander: Lander, capsys: pytest.CaptureFixture[str]
) -> None:
    open_run, short = lander.run(), lander.run()
    open_run.new("a1")
    assert cli(pg_url, schemas, "--run-id", open_run.run_id) == 2
    assert "is not complete" in capsys.readouterr().err
    assert cli(pg_url, schemas, "--run-id", open_run.run_id, "--force") == 0
    assert "run incomplete (forced), left pending" in capsys.readouterr().out

    short.new("b1")
    short.complete(emitted=3)
    assert cli(pg_url, schemas, "--run-id", short.run_id) == 1
    captured = capsys.readouterr()
    assert "1 record events landed, Knit emitted 3 and saw 3 consumed: 2 MISSING" in captured.out
    assert "missing events" in captured.err
    assert cli(pg_url, schemas, "--run-id", short.run_id, "--no-reconcile") == 0


def test_completed_between_and_the_module_entry_point(pg_url: str, schemas: Schemas, lander: Lander, conn: Any) -> None:
    r1 = lander.run()
    r1.new("a1")
    r1.complete()
    args = [
        sys.executable,
        "-m",
        "knit_provider",
        "--database-url",
        pg_url,
        "--landing-schema",
        schemas.landing,
        "--target-schema",
        schemas.target,
        "normalize",
        "--completed-between",
        "2000-01-01T00:00:00Z",
        "2100-01-01T00:00:00Z",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f"run {r1.run_id}: 1 record events" in done.stdout
    naive = subprocess.run(
        [*args[:-2], "2000-01-01", "2100-01-01"], capture_output=True, text=True, timeout=120, check=False
    )
    assert naive.returncode == 2
    assert "has no time zone" in naive.stderr


def test_pending_takes_every_enabled_data_type_unless_one_is_named(
    pg_url: str, schemas: Schemas, lander: Lander, capsys: pytest.CaptureFixture[str]
) -> None:
    applications, jobs = lander.run(), lander.run(data_type="ats_jobs")
    applications.new("a1")
    applications.complete()
    jobs.new("j1", data={"info": {"id": "j1", "title": "Data Engineer", "status": "OPEN"}})
    jobs.complete()
    assert cli(pg_url, schemas, "--pending", "--data-type", "ats_jobs") == 0
    out = capsys.readouterr().out
    assert f"run {jobs.run_id}: 1 record events, 1 jobs (1 changed)" in out
    assert applications.run_id not in out
    assert cli(pg_url, schemas, "--pending") == 0
    assert f"run {applications.run_id}: 1 record events, 1 applications" in capsys.readouterr().out
    assert cli(pg_url, schemas, "--pending", "--data-type", "ats_candidates") == 2
    assert "No data type 'ats_candidates' is known" in capsys.readouterr().err
    assert cli(pg_url, schemas, "--run-id", jobs.run_id, "--data-type", "ats_jobs") == 2
    assert "a --run-id is its own type" in capsys.readouterr().err
