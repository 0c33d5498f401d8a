"""The uplink sink: journal batches -> signed frames -> central MQTT broker, QoS 1.

`write()` returns only once the broker has answered the frame's PUBLISH with a PUBACK, so
the delivery runner moves this sink's cursor (and the journal may forget the records) only
for frames the broker has taken responsibility for.  Every outcome is one of:

    PUBACK, success reason code              delivered
    not connected, disconnected while        RetryableError: the same records again, later
      waiting, no PUBACK within `timeout`,
      a refusing reason code (e.g. 0x87)
    0x10 no matching subscribers             RetryableError: no ingest has subscribed yet,
                                             the frame went nowhere
    0x97 quota exceeded                      ThrottledError
    0x95 packet too large, 0x99 payload      PermanentError: the runner splits the batch
      format invalid

Each attempt is a new frame with a new sequence number: a frame whose PUBACK was lost may
still reach the ingest beside its retry; both carry the same readings with the same
timestamps, so InfluxDB stores each as one point (SPEC section 6) either way.

Sequence numbers are monotonic per gateway and survive restarts: the counter reserves
blocks of `_SEQ_BLOCK` numbers in a small state file (written and fsynced before the first
number of a block is used), so a restart skips at most one block and never reuses one.
A new state file starts above every `uplink-*.seq` beside it: an unnamed sink's file is
named after its identity (broker and topic prefix; it was `uplink-mqtt-N.seq` by position
before), and the ingest would refuse numbers that went back as replays.

The state file also holds the epoch of the numbering ("UPTO EPOCH", the epoch in hex): a
random number drawn when the file is made (or found without one, as written before epochs).
Every frame carries it (frame version 3).  A gateway whose data_dir is lost numbers from 1
again, but in a new epoch, which the ingest keeps a replay window of its own for: its
frames are not taken for replays.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import struct
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.errors import ConfigError, PermanentError, RetryableError, ThrottledError
from gateway.keys import UplinkKey, load_key_file
from gateway.mqtt import NO_MATCHING_SUBSCRIBERS, MqttLink, link_settings, puback_reason
from gateway.reading import Record
from gateway.sinks.mqtt.config import MqttSinkConfig
from gateway.sinks.mqtt.frame import SEQ_MAX, encode_frame, readings_topic, sign

__all__ = ["MqttSink", "SequenceCounter"]

log = logging.getLogger("remotecal.sink.mqtt")

_SEQ_BLOCK = 1024
_THROTTLED = {0x97}
_PERMANENT = {0x95, 0x99}


def _stored(path: Path) -> int:
    """The number another counter file holds, 0 when it cannot be read."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def new_epoch() -> int:
    """A random epoch, 1 .. 2**63 - 1 (0 means none: a frame from before epochs)."""
    return secrets.randbits(63) or 1


class SequenceCounter:
    """Monotonic frame numbers, persisted in blocks (see the module docstring)."""

    def __init__(self, path: Path, start_above: Sequence[Path] = ()) -> None:
        self.path = path
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            text = str(max((_stored(p) for p in start_above if p != path), default=0))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the uplink sequence file: {exc.strerror}") from None
        parts = text.split()
        try:
            self._reserved = int(parts[0]) if parts else 0
            self.epoch = int(parts[1], 16) if len(parts) > 1 else new_epoch()
            if not (self._reserved >= 0 and 0 < self.epoch <= SEQ_MAX) or len(parts) > 2:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{path}: not a sequence number and epoch: {text[:60]!r}") from None
        self._next = self._reserved + 1

    def next(self) -> int:
        seq = self._next
        if seq > self._reserved:
            self._reserve(seq - 1 + _SEQ_BLOCK)
        self._next += 1
        return seq

    def _reserve(self, upto: int) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            f.write(f"{upto} {self.epoch:x}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._reserved = upto


class MqttSink:
    """The `Sink` for the central broker: one `gateway.mqtt.MqttLink` (MQTT 5, a clean session,
    publishes only) on the event loop."""

    def __init__(self, config: MqttSinkConfig, *, site: str, gateway: str, data_dir: Path,
                 name: str | None = None) -> None:
        self.config = config
        self.name = name or config.name or "mqtt"
        self.batch_size = config.batch_size
        self.flush_interval_s = config.flush_interval
        self.site, self.gateway = site, gateway
        self.key: UplinkKey = load_key_file(config.key_file)
        if (self.key.site, self.key.gateway) != (site, gateway):
            raise ConfigError(
                f"sinks.mqtt.key_file: {config.key_file} is the key of {self.key.site}/{self.key.gateway}, "
                f"not of this gateway {site}/{gateway}")
        self.topic = readings_topic(config.topic_prefix, site, gateway)
        self.frames = 0
        # A name is safe in a file name and a client id; an identity (`mqtt:mqtts://host ...`) is not.
        label = config.name or "auto-" + hashlib.sha256(self.name.encode()).hexdigest()[:12]
        self._seq = SequenceCounter(config.state_file or data_dir / f"uplink-{label}.seq",
                                    sorted(data_dir.glob("uplink-*.seq")))
        self._started = False
        self._link = MqttLink(link_settings(config, client_id=f"remotecal-uplink-{site}-{gateway}-{label}"),
                              name=f"mqtt sink {self.name!r}", log=log)

    def __repr__(self) -> str:
        return f"MqttSink(name={self.name!r}, url={self.config.url!r}, topic={self.topic!r})"

    @property
    def connected(self) -> bool:
        return self._link.connected

    async def _ensure_started(self) -> None:
        if not self._started:
            self._started = True
            await self._link.start()

    async def write(self, records: Sequence[Record]) -> None:
        """Publish the records as one signed frame and wait for its PUBACK."""
        await self._ensure_started()
        if not records:
            return
        if not await self._link.wait_connected(self.config.timeout):
            raise RetryableError(f"{self.name}: not connected to {self.config.host}:{self.config.port}")
        try:
            body = encode_frame(self._seq.next(), time.time_ns(), self.site, self.gateway, records,
                                epoch=self._seq.epoch)
        except (ValueError, TypeError, struct.error) as exc:
            # One record does not fit the format (a string over 64 KiB, over 255 tags): the
            # runner splits the batch down to it and quarantines it.
            raise PermanentError(f"cannot encode as an uplink frame: {exc}") from None
        frame = sign(self.key.secret, body)
        try:
            code = await asyncio.wait_for(self._link.publish(self.topic, frame), self.config.timeout)
        except TimeoutError:
            raise RetryableError(
                f"{self.name}: no PUBACK within {self.config.timeout:g} s") from None
        except ConnectionError as exc:
            raise RetryableError(f"{self.name}: {exc}") from None
        if code == NO_MATCHING_SUBSCRIBERS:
            # MQTT 5 tells a publisher that nobody subscribed; Mosquitto 2.0 says so in the
            # PUBACK. The frame is gone, not delivered: keep the records and try again.
            raise RetryableError(f"{self.name}: no ingest subscribes to {self.topic} (yet)")
        if code >= 0x80:
            why = puback_reason(code)
            if code in _THROTTLED:
                raise ThrottledError(f"{self.name}: broker: {why}", self.config.max_retry_interval)
            if code in _PERMANENT:
                raise PermanentError(f"broker refused the frame: {why}")
            raise RetryableError(f"{self.name}: broker refused the frame: {why}")
        self.frames += 1

    async def start(self) -> None:
        """Connect now rather than at the first write (optional)."""
        await self._ensure_started()

    async def aclose(self) -> None:
        await self._link.stop()
