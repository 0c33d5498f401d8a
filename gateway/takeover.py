"""Session takeovers: two MQTT clients with one client id, named once per episode.

The broker gives a persistent session to the last client that connected with its client id.
Two gateways (or two copies of one) with the same `client_id` therefore take the session from
each other over and over and split the messages between them.  Logged as connection states,
that is an endless "unreachable - disconnected: connection closed" / "connected" pair; here
it is one error line naming the client id per episode, and the link neither logs the tug of war
nor resets its backoff while it lasts, so it slows down.

A broker that says why (MQTT 5 DISCONNECT 0x8E, "session taken over") is believed at once.
Mosquitto 2.0 just closes the old connection: a broker that closes a working connection
without a word `CLOSES` times within `CLOSES_WITHIN_S`, each reconnect working at once, is
taken for a takeover (a broker restart makes the reconnects fail instead, which starts the
count anew: `unreachable()`).  Used by the MQTT 5 link (`gateway.mqtt.link`: every MQTT
client of remotecal) and by the paho link of MQTT 3.1.1 sources (`gateway.sources.mqtt.link311`).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

__all__ = ["CLOSES", "CLOSES_WITHIN_S", "EPISODE_S", "TakeoverWatch"]

EPISODE_S = 300.0
"""A session takeover this long after the last one starts a new episode (logged again)."""
CLOSES = 3
CLOSES_WITHIN_S = 60.0
"""Closes by the broker (no DISCONNECT, reconnects working) that are taken for a takeover."""


class TakeoverWatch:
    """One connection's takeover episodes.  `what` names the connection in the log lines
    ("mqtt source 'broker'"); not thread-safe: call it from the connection's own thread."""

    def __init__(self, log: logging.Logger, what: str, host: str, port: int, client_id: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log, self._what, self._where, self.client_id = log, what, f"{host}:{port}", client_id
        self._clock = clock
        self.taken_over = False
        """This session ended by a takeover (reset by `connected()`)."""
        self._at: float | None = None  # last takeover of the current episode
        self._count = 0
        self._closes: collections.deque[float] = collections.deque()

    @property
    def in_episode(self) -> bool:
        return self._at is not None

    def connected(self) -> None:
        self.taken_over = False

    def unreachable(self) -> None:
        """The broker could not be reached: whatever closed the connection, not a takeover."""
        self._closes.clear()
        self._at = None

    def session_taken_over(self, how: str) -> None:
        """Another client connected with our client id and the broker handed it our session."""
        now = self._clock()
        self.taken_over = True
        if self._at is None or now - self._at > EPISODE_S:
            self._count = 0
            self._log.error(
                "%s (%s): %s another client connected with the same MQTT client id %r (a second gateway, or "
                "a copy of this one, with this client_id?). The broker gives the session to the last one to "
                "connect, so the two take it from each other and split the messages; give each gateway its "
                "own client_id. Reconnecting with backoff; logged once per episode",
                self._what, self._where, how, self.client_id)
        self._at = now
        self._count += 1

    def closed_by_broker(self) -> None:
        """The broker closed a working connection without a word."""
        now = self._clock()
        closes = self._closes
        closes.append(now)
        while closes and now - closes[0] > CLOSES_WITHIN_S:
            closes.popleft()
        if self.in_episode or len(closes) >= CLOSES:
            self.session_taken_over(f"session taken over: the broker closed the connection {len(closes)} "
                                    f"times within {CLOSES_WITHIN_S:.0f} s, each time soon after we "
                                    "connected - most likely")

    def still_ours(self) -> None:
        """Called while connected: an episode ends once the session stayed ours for a while."""
        if self._at is not None and self._clock() - self._at > EPISODE_S:
            self._log.info("%s: the session stayed ours for %.0f s: %d takeover(s) of client id %r in that "
                           "episode", self._what, EPISODE_S, self._count, self.client_id)
            self._at = None
