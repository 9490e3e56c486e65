"""Pure timing helpers: backoff between failed passes, and how long the loop may sleep."""

from __future__ import annotations

import tenacity


class Backoff:
    """Exponential backoff with jitter between failed passes (tenacity's wait strategy)."""

    def __init__(self, initial: float = 0.1, maximum: float = 10.0) -> None:
        self._wait = tenacity.wait_exponential_jitter(
            multiplier=initial, max=maximum, jitter=initial
        )
        self.attempt = 0

    def next_delay(self) -> float:
        self.attempt += 1
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = self.attempt
        return float(self._wait(state))

    def reset(self) -> None:
        self.attempt = 0


def loop_timeout(now: float, verify: float, **timers: float | None) -> float:
    """How long the loop may sleep: until the earliest pending timer (verify,
    and each of `timers` that is pending, i.e. not None: next attempt, read-back,
    probe interval (a duration), repair, kernel view check). A timer left out
    here is one that never fires while the daemon is idle (issue 10, 4.2)."""
    waits = [verify - now]
    for name, at in timers.items():
        if at is not None:
            waits.append(at if name == "probe" else at - now)
    return max(0.0, min(waits))
