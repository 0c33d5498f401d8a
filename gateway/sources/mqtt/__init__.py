"""MQTT source: messages from a broker, acknowledged only after their readings are committed.

    config.py     the `[[sources.mqtt]]` schema (sample.toml shows every key)
    parse.py      topic mappings: a message -> readings, or a reason to reject it
    link311.py    the MQTT 3.1.1 link (paho-mqtt), for brokers without MQTT 5; MQTT 5
                  brokers are reached by remotecal's one MQTT layer, `gateway.mqtt`
    source.py     `MqttSource`: link -> parse -> batches for the journal
    plugin.py     the kind's declaration (gateway.registry)
"""
