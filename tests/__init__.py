"""ChatServer's test suite: one folder per layer of function/chatserver/, helpers in tests/support/.

A package, so that the helpers are imported by one name everywhere (``from tests.support.corpus
import clip``): pytest's default "prepend" import mode puts the repository root on sys.path for
a package under it, and ``python -m bench`` runs from the root too.
"""

import sys
from pathlib import Path

# infra/ holds scripts, not an installed package: its emulation package (the Runtime Interface
# Emulator, event builders, process helpers) serves the tests and the benchmark too. Here, so
# that every module under tests/ can import it whatever was imported first.
_INFRA = str(Path(__file__).resolve().parents[1] / "infra")
if _INFRA not in sys.path:
    sys.path.insert(0, _INFRA)
