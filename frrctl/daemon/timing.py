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


def gather_limit(busy: bool, window: float, max_window: float) -> float:
    """How long one netlink read may gather a burst before a pass judges it.

    With a batch in flight the read gathers up to `max_window` and also ends
    the moment the worker is done, so FRR is never idle while the kernel
    still sends routes. With the worker idle any waiting only delays FRR:
    the first part of a burst goes after at most two quiet `window`s (a VM
    plug's IPv4 and IPv6 routes, a few ms apart, still make one batch)."""
    return max_window if busy else min(max_window, 2 * window)


def step_timeout(timeout: float, holder_down: bool, probe_interval: float) -> float:
    """The loop's select timeout. While bgpd (or staticd) is known gone no pass
    can run, so a due pass must not make the loop spin: it waits for the next
    probe (which reconciles the moment the daemon is back)."""
    return max(timeout, probe_interval) if holder_down else timeout
