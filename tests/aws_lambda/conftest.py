"""The Python the Lambda handler runs on under the emulator, for the tests of this layer."""

import pytest

from tests.support.servers import installed, runtimes


@pytest.fixture(scope="module", params=runtimes.RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    """The Python the emulator runs the handler on: the suite's (3.11), then the image's (3.12,
    with exactly what infra/image/install.sh installs)."""
    # CI runs infra/install.sh --dev, which creates both: a missing one fails there.
    return installed(lambda: runtimes.runtime_python(request.param))
