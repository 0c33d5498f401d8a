"""Line-oriented instruments (SCPI queries or streamed lines) over TCP or a serial port.

    config.InstrumentSourceConfig    the schema of one instrument (and its channels)
    source.InstrumentSource          the source: `async with`, `async for batch in src.batches()`
"""
