"""remotecal edge gateway: sources -> durable journal -> sinks."""

__version__ = "0.1.0"
