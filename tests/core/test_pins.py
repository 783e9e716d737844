"""What the repository runs besides Python packages is pinned to exact releases, and Dependabot
proposes each bump as a pull request that the suite checks: uv.lock, the workflow's actions,
the Dockerfile's base image and the images docker-compose.yml runs."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
DEPENDABOT = ROOT / ".github" / "dependabot.yml"


def test_dependabot_covers_every_kind_of_pin() -> None:
    config = yaml.safe_load(DEPENDABOT.read_text())
    ecosystems = {update["package-ecosystem"] for update in config["updates"]}
    assert ecosystems == {"uv", "github-actions", "docker", "docker-compose"}
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema",
               "vendor.dependabot", str(DEPENDABOT)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_images_are_exact_releases() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    images = {name: service["image"] for name, service in services.items() if "image" in service}
    assert set(images) == {"mongo", "mailpit"}
    for image in images.values():
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), image


def test_both_dockerfile_stages_use_one_exact_python() -> None:
    """The venv built in the first stage points at the second stage's Python."""
    bases = re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert len(bases) == 2
    assert bases[0] == bases[1]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", bases[0]), bases[0]
