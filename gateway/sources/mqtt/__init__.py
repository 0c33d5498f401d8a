"""MQTT source: messages from a broker, acknowledged only after their readings are committed.

    config.py     the `[[sources.mqtt]]` schema (sample.toml shows every key)
    parse.py      topic mappings: a message -> readings, or a reason to reject it
    message.py    one received message, whatever link delivered it
    link5.py      the MQTT 5 link (packets parsed by `mqtt5`)
    link311.py    the MQTT 3.1.1 link (paho-mqtt), for brokers without MQTT 5
    source.py     `MqttSource`: link -> parse -> batches for the journal
    plugin.py     the kind's declaration (gateway.registry)
"""
