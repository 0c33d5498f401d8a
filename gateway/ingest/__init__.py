"""Central ingest: the other end of the MQTT uplink (`gateway.sinks.mqtt`).

    config.py    CENTRAL.toml (sample.toml shows every key), read as the site config with
                 `[[sources.uplink]]` that does the same (`load_ingest_config`)
    verify.py    is a message a frame one of our gateways signed?
    replay.py    which (gateway, epoch, sequence number) frames to refuse, and why a window
    refused.py   refused frames, kept whole (refused.db): waiting for a key, or for --requeue

An ingest worker is a gateway (gateway.runtime) whose source is the uplink
(gateway.sources.uplink, which uses the three checks above): one runtime, one supervisor,
one journal set-up.  `remotecal ingest` (remotecal.commands) runs it from either config form;
`remotecal keys new` writes the keys (gateway.keys).
"""
