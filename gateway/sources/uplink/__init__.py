"""`[[sources.uplink]]`: the central end of the gateways' MQTT uplink (gateway.sinks.mqtt).

A central site is a gateway like any other: its source is the shared subscription to the
gateways' signed frames on the central broker, its sinks are InfluxDB - one runtime
(gateway.runtime), one journal, one supervisor.  What is particular to relaying other
gateways' evidence lives here:

    config.py      one `[[sources.uplink]]` block (sample.toml shows every key)
    subscriber.py  the shared subscription (gateway.mqtt, manual acks) and what Mosquitto does with it
    source.py      `UplinkSource`: verify, replay check, refused frames, requeue, counters

The checks themselves are gateway.ingest's (verify, replay, refused); `remotecal ingest -c
CENTRAL.toml` runs an older central config as this source (gateway.ingest.config).
"""
