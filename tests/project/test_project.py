"""The README's two commands are the ones CI runs."""

import re
import tomllib

from tests.support import REPO


def readme_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_has_the_run_and_test_commands():
    run, test = readme_commands()
    assert run.startswith("bash infra/install.sh && ")
    # The server entry with the read deadlines (chatserver/server.py), the one the tests run.
    assert run.endswith(".venv/bin/python -m chatserver --host 127.0.0.1 --port 8000")
    servers = (REPO / "tests" / "support" / "servers.py").read_text()
    assert '[sys.executable, "-m", "chatserver", "--host", "127.0.0.1", "--port", str(port)]' in servers
    assert test.startswith("bash infra/install.sh --dev && ")
    assert "pytest" in test


def test_ci_runs_exactly_the_readme_test_command_then_ruff():
    ci_lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and line[0] != "#"]
    _, test = readme_commands()
    # '|| exit 1': under set -e an install that fails before the '&&' would not stop CI.
    assert f"{test} || exit 1" in ci_lines
    assert ".venv/bin/ruff check ." in ci_lines
    assert ".venv/bin/ruff format --check ." in ci_lines
    assert "set -euo pipefail" in ci_lines, "a failing step (pytest's exit 5 included) must fail CI"
    # The markers (slow, browser, emulator, s3server) select on request only: nothing in the
    # configuration deselects tests, so the README's command runs all of them.
    pytest_options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-m" not in pytest_options["addopts"].split(), pytest_options
    assert "--strict-markers" in pytest_options["addopts"].split(), pytest_options
