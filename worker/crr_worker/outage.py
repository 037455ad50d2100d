"""A site held back while it is down, so that an outage is waited out instead of spending versions' retry budgets.

An error that may concern the whole site (retry.is_site_error: refused or reset connections, timeouts, DNS, 503 /
SlowDown) is checked with a probe, one cheap request to the site. When the probe fails alike, the site is down: it
is held (its processor fetches nothing new and its copies wait instead of trying) while one thread probes it every
PROBE_INTERVAL_S; once the site answers, the copies try again and the tries made during the outage do not count.
When the probe answers at once, the error was about the version after all, and counts as one of its tries.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from crr_worker.logs import log
from crr_worker.retry import Stopped, describe, is_site_error

LOG = logging.getLogger("crr_worker.outage")
PROBE_INTERVAL_S = 2.0
WAKE_S = 0.5  # how often waiting copies look at the stop signal


class SiteHold:
    """Whether one site is held back by an outage; copies of every thread of its processor share it."""

    def __init__(self, site: str, stop: threading.Event, interval_s: float = PROBE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.site, self.stop, self.interval_s, self.clock = site, stop, interval_s, clock
        self._changed = threading.Condition()
        self._probing = False  # one thread probes at a time; the others wait for its verdict
        self._down_since: float | None = None
        self._back_at = float("-inf")

    @property
    def held(self) -> bool:
        """Whether the site is down: nothing new should be started for it."""
        return self._down_since is not None

    def wait_while_held(self, give_up=None) -> float:
        """Block while the site is held or its probe runs; the seconds waited. Stopped when the worker stops or
        `give_up` (the caller's own signal, e.g. its partition was revoked) is set."""
        started = self.clock()
        with self._changed:
            while self._probing:
                if self.stop.is_set() or (give_up is not None and give_up.is_set()):
                    raise Stopped()
                self._changed.wait(WAKE_S)
        return self.clock() - started

    def wait_out(self, error: BaseException, probe: Callable[[], None], give_up=None) -> float | None:
        """After a site error, the seconds the caller was held back by an outage of the site, once it is over; None
        when the site answered the probe at once (`error` was then not the site's). Stopped when the worker stops.

        The first caller probes, and while the probe fails it holds the site and probes again every interval (until
        the site answers or the worker stops: the outage is the site's, whatever becomes of the caller's copy); the
        callers meanwhile wait for its verdict, or give up when `give_up` is set.
        """
        started = self.clock()
        with self._changed:
            verdict_pending = self._probing
            self._probing = True  # (already, when pending: the site is held only while its prober runs)
        if verdict_pending:
            self.wait_while_held(give_up)
            with self._changed:
                return self.clock() - started if self._back_at >= started else None
        return self._probe_until_up(error, probe, started)

    def _probe_until_up(self, error: BaseException, probe: Callable[[], None], started: float) -> float | None:
        down_since = None
        try:
            while not self._answers(probe):
                if down_since is None:
                    down_since = self.clock()
                    with self._changed:
                        self._down_since = down_since
                    log(LOG, logging.WARNING, "site unreachable, holding it", site=self.site, error=describe(error),
                        probe_every_s=self.interval_s)
                if self.stop.wait(self.interval_s):
                    raise Stopped()
        finally:
            with self._changed:
                self._probing = False
                if down_since is not None:
                    self._down_since, self._back_at = None, self.clock()
                self._changed.notify_all()
        if down_since is None:
            return None
        log(LOG, logging.INFO, "site reachable again, resuming", site=self.site,
            held_s=round(self.clock() - down_since, 1))
        return self.clock() - started

    @staticmethod
    def _answers(probe: Callable[[], None]) -> bool:
        """Whether the site answers the probe; an error reply (403, 404...) is an answer: the site is up."""
        try:
            probe()
        except Exception as exc:  # noqa: BLE001 - classified right here
            return not is_site_error(exc)
        return True
