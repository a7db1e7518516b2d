"""Fault injection shared by the simulators: a fault that applies to the next ``times`` requests, or forever."""

from __future__ import annotations


class Countdown:
    """Mixin for a fault record with a ``times`` field (``None`` = until cleared)."""

    times: int | None

    def consume(self) -> bool:
        """True while the fault still applies; counts one request."""
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True
