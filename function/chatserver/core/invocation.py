"""The end of the current Lambda invocation, for work that must stop before the function is frozen.

The Lambda dispatcher sets it from the context's remaining time; outside Lambda it is unset.
"""

import time
from contextvars import ContextVar

# time.monotonic() by which the invocation ends; None: no such bound (a server, a test).
invocation_deadline: ContextVar[float | None] = ContextVar("invocation_deadline", default=None)


def seconds_left() -> float | None:
    """Seconds until the current invocation ends, or None outside an invocation."""
    deadline = invocation_deadline.get()
    return None if deadline is None else deadline - time.monotonic()
