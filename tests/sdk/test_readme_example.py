"""The README's pasteable pipeline example and examples/quickstart/pipeline.py, run exactly as
a newcomer would (a separate Python process, MILLRACE_URL and MILLRACE_TOKEN in the
environment) against the live stack, on the ``local`` compute target."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runs.models import PipelineRun, Status

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"\.venv/bin/python - <<'PY'\n(.*?)\nPY\n", text, re.S)
    assert match, "the README lost its pipeline example"
    return match.group(1)


def run_python(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done


def test_the_readme_example_runs_twice_and_reuses_every_step(
    stack: Any, team: Any, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "MILLRACE_URL": stack.url,
        "MILLRACE_TOKEN": team.tokens["alice"],
        "PYTHONPATH": str(ROOT),
    }
    source = str(ROOT / "examples" / "quickstart" / "src")
    snippet = (
        readme_snippet()
        .replace('Workspace.get("demo")', 'Workspace.get("forecast")')
        .replace('"examples/quickstart/src"', repr(source))
    )
    first = run_python(["-c", snippet], env, tmp_path)
    assert "[]" in first.stdout.splitlines()[:3]  # validate() found no problem
    assert "rmse" in first.stdout and "epoch  40" in first.stdout
    assert any((tmp_path / "report").rglob("report.json"))
    second = run_python(["-c", snippet], env, tmp_path)
    assert "rmse" in second.stdout
    runs = list(PipelineRun.objects.order_by("created_at"))
    assert [r.status for r in runs] == [Status.COMPLETED, Status.COMPLETED]
    assert all(s.reused_from_id is not None for s in runs[1].steps.all())
    assert runs[0].parameters == {"tolerance": 0.5}


def test_examples_quickstart_pipeline_runs(stack: Any, team: Any) -> None:
    env = {
        **os.environ,
        "MILLRACE_URL": stack.url,
        "MILLRACE_TOKEN": team.tokens["bob"],
        "MILLRACE_WORKSPACE": "forecast",
        "PYTHONPATH": str(ROOT),
    }
    done = run_python([str(ROOT / "examples" / "quickstart" / "pipeline.py")], env, ROOT)
    assert "within_tolerance" in done.stdout
    run = PipelineRun.objects.get()
    assert run.status == Status.COMPLETED
    assert sorted(run.steps.values_list("name", flat=True)) == [
        "evaluate.py",
        "prepare.py",
        "train.py",
    ]
