"""remotecal's MQTT layer: one MQTT 5 client on the event loop (`MqttLink`), packets by `mqtt5`.

    settings.py   `LinkSettings`, made by `link_settings` from any broker config block
    link.py       `MqttLink`: connection, subscriptions, inbox and batched PUBACKs
    message.py    one received message

Ground floor of the gateway's MQTT users (the MQTT source, the uplink sink, run control, the
ingest): it imports nothing of theirs.  Why this client and not paho: see link.py.
"""

from gateway.mqtt.link import NO_MATCHING_SUBSCRIBERS, BrokerRefused, MqttLink, NotMqtt, puback_reason
from gateway.mqtt.message import Message
from gateway.mqtt.settings import (
    SESSION_NEVER_EXPIRES,
    LinkSettings,
    Subscription,
    link_settings,
    ssl_context,
)

__all__ = ["NO_MATCHING_SUBSCRIBERS", "SESSION_NEVER_EXPIRES", "BrokerRefused", "LinkSettings", "Message",
           "MqttLink", "NotMqtt", "Subscription", "link_settings", "puback_reason", "ssl_context"]
