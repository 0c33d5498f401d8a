"""Central ingest: the other end of the MQTT uplink (`gateway.sinks.mqtt`).

    config.py    CENTRAL.toml (sample.toml shows every key)
    verify.py    is a message a frame one of our gateways signed?
    replay.py    which (gateway, epoch, sequence number) frames to refuse, and why a window
    refused.py   refused frames, kept whole (refused.db): waiting for a key, or for --requeue
    runtime.py   `Ingest`: shared subscription -> verify -> journal -> ack; journal -> InfluxDB

`remotecal ingest` and `remotecal keys new` (remotecal.cli) run `Ingest` and `gateway.keys`.
"""
