"""The CI workflow offered to users runs the suite and the scale check on a real MongoDB,
and is valid GitHub Actions syntax (checked against the schema check-jsonschema vendors:
these machines cannot run it)."""

import subprocess
import sys
from pathlib import Path

import pytest

WORKFLOW = Path(__file__).parents[2] / ".github" / "workflows" / "ci.yml"


def check(path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema",
               "vendor.github-workflows", str(path)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def test_the_workflow_is_valid_github_actions_syntax() -> None:
    result = check(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_workflow_would_be_caught(tmp_path: Path) -> None:
    broken = tmp_path / "ci.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:"))
    assert check(broken).returncode != 0


@pytest.mark.parametrize(
    "step",
    [
        "MONGODB_URL: mongodb://127.0.0.1:27017/?replicaSet=rs0",
        "mongo:8.0 --replSet rs0",
        "run: scripts/test",
        "run: scripts/bench --scale 100000",
    ],
)
def test_the_workflow_tests_against_a_real_replica_set(step: str) -> None:
    assert step in WORKFLOW.read_text()
