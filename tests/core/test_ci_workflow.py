"""The CI workflow offered to users runs the suite and the scale check on a real MongoDB,
and is valid GitHub Actions syntax (checked against the schema check-jsonschema vendors:
these machines cannot run it). It reads the repository only, runs actions pinned to a
commit, installs from uv.lock, and starts the MongoDB image docker-compose.yml pins."""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def check(path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema",
               "vendor.github-workflows", str(path)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def steps() -> list[dict[str, Any]]:
    return [step for job in workflow()["jobs"].values() for step in job["steps"]]


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
        '"$image" --replSet rs0',
        "run: EXTRAS=test scripts/bootstrap",
        "run: scripts/test",
        "run: scripts/bench --scale 100000",
    ],
)
def test_the_workflow_tests_against_a_real_replica_set(step: str) -> None:
    assert step in WORKFLOW.read_text()


def test_the_token_can_only_read() -> None:
    assert workflow()["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in workflow()["jobs"].values())


def test_every_action_is_pinned_to_a_commit_with_its_version_named() -> None:
    uses = re.findall(r"uses: (\S+)(.*)", WORKFLOW.read_text())
    assert len(uses) == len([step for step in steps() if "uses" in step]) >= 2
    for action, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), action
        assert re.fullmatch(r" # v\d+\.\d+\.\d+", comment), (action, comment)


def test_mongodb_is_the_image_docker_compose_pins() -> None:
    """The workflow's own line finds the image, and it is an exact release, not `8.0`."""
    (start,) = [step["run"] for step in steps() if "docker run" in step.get("run", "")]
    (extract,) = [line.strip() for line in start.splitlines() if line.strip().startswith("image=")]
    image = subprocess.run(
        ["bash", "-c", f'{extract}; echo "$image"'], cwd=ROOT, capture_output=True, text=True,
        check=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert image == compose["services"]["mongo"]["image"]
    assert re.fullmatch(r"mongo:\d+\.\d+\.\d+", image), image
