"""scripts/bench on a machine without wrk: one line that says what is missing and how to get
it, and a non-zero exit, before anything is installed or started. The benchmark never runs."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MISSING_WRK = "scripts/bench needs wrk: apt-get install wrk (or brew install wrk)"


@pytest.fixture
def path_without_wrk(tmp_path: Path) -> str:
    """A PATH holding bash and dirname (what scripts/bench runs before its check) and no wrk."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """scripts/bench alone, with a stand-in for the install and the harness it would run next:
    reaching either is visible in the output."""
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "bench", root / "scripts" / "bench")
    stand_in = "#!/bin/sh\necho reached {0} $*\n"
    for path in ("scripts/bootstrap", ".venv/bin/python"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(stand_in.format(path))
        (root / path).chmod(0o755)
    return root


def run(command: list[str], path: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env={"PATH": path}, cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("args", [[], ["--workers", "2"], ["--rounds", "1", "--seconds", "1"]])
def test_a_run_that_needs_wrk_stops_first_with_one_line(
    checkout: Path, path_without_wrk: str, args: list[str]
) -> None:
    result = run([str(checkout / "scripts" / "bench"), *args], path_without_wrk, checkout)
    assert result.returncode != 0
    assert result.stderr == MISSING_WRK + "\n"
    assert result.stdout == ""  # neither the install nor the harness was reached


@pytest.mark.parametrize(
    "mode", ["--scale", "--live", "--storm", "--soak", "--batch", "--seed", "--webhooks", "--cost"]
)
def test_modes_that_time_their_own_requests_need_no_wrk(
    checkout: Path, path_without_wrk: str, mode: str
) -> None:
    result = run([str(checkout / "scripts" / "bench"), mode, "10"], path_without_wrk, checkout)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "reached scripts/bootstrap",
        f"reached .venv/bin/python -m bench {mode} 10",
    ]


def test_the_harness_run_directly_says_the_same(path_without_wrk: str) -> None:
    """`python -m bench` without scripts/bench: the same line, before any server starts."""
    result = run([sys.executable, "-m", "bench"], path_without_wrk, ROOT)
    assert result.returncode != 0
    assert result.stderr == MISSING_WRK + "\n"
