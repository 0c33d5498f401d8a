"""The InfluxDB sink: line protocol over HTTP to InfluxDB 1.x/2.x and compatible servers.

    config.py        the `[[sinks.influxdb]]` schema (sample.toml shows every key)
    lineprotocol.py  `Reading`/`HealthSample` -> line protocol
    sink.py          `InfluxDBSink`: write a batch, classify what went wrong

This file imports nothing: the line-protocol encoder is ground floor (the pipeline writes its
`calibration_point` points with it), and importing it must not load the sink's HTTP client.
"""
