"""The suite runs on exactly the versions the image installs: `pip freeze` against the pins.

A test tool that needs another version of a runtime package (aws-sam-translator once
downgraded pydantic this way) would make the suite test something the image does not ship.
"""

import re
import subprocess
import sys

from tests.support import REPO

# Every file the image installs from (Dockerfile), runtime and second engine.
PIN_FILES = ["requirements.txt", "requirements-openai-whisper.txt", "requirements-openai-whisper-nodeps.txt"]
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;#]+)")


def canonicalize_name(name: str) -> str:
    """PEP 503: "Pydantic_Core" and "pydantic-core" are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    found = {}
    for name in PIN_FILES:
        for line in (REPO / "function" / name).read_text().splitlines():
            if match := PIN.match(line.strip()):
                found[canonicalize_name(match[1])] = match[2]
    return found


def frozen() -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    versions = {}
    for line in done.stdout.splitlines():
        name, equals, version = line.partition("==")
        if equals:
            # pip prints local versions as installed ("2.13.0+cpu"): the pin is the public part.
            versions[canonicalize_name(name)] = version.split("+")[0]
    return versions


def test_every_runtime_pin_is_what_the_test_venv_runs():
    wanted, installed = pins(), frozen()
    assert len(wanted) >= 15, wanted
    mismatched = {
        name: f"pinned {version}, installed {installed.get(name, 'nothing')}"
        for name, version in wanted.items()
        if installed.get(name) != version
    }
    assert mismatched == {}, "run `bash infra/install.sh --dev`; a test dependency may be moving a pin"


def test_the_dev_install_keeps_the_runtime_pins():
    """install.sh installs the test tools under the runtime pins as constraints."""
    script = (REPO / "infra" / "install.sh").read_text()
    dev = script.split('if [[ "${1:-}" == "--dev" ]]; then', 1)[1]
    command = dev.split("tests/requirements.txt", 1)[0].rsplit("pip .venv install", 1)[1]
    assert "-c function/requirements.txt" in command
