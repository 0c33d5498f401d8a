"""`remotecal demo`: the whole chain on one machine, with no outside service.

    virtual chamber (firmware_bridge) ── reference + DUT1 over Modbus TCP (loopback) ─┐
                                     └─ DUT2, DUT3 as MQTT sensor nodes ─► broker ───┤
                                                                                      ▼
                           remotecal gateway (journal) ─► local store (or --influx URL)
                                                                                      ▼
                           pipeline: plateaus, corrections, GUM budgets ─► DIR/corrections.csv,
                                                                           report.html, certificate.xml

    plan.py      the chamber program, speed, stability criteria, the output folder
    devices.py   the virtual instruments and sensor nodes in the chamber, with their known errors
    broker.py    the loopback broker: Mosquitto when it is on the PATH, else amqtt embedded
    configs.py   site.toml and pipeline.toml, as a user would write them
    chain.py     `run_demo`: devices, broker, gateway, then the pipeline
    live.py      the terminal's live display (`remotecal demo`)

The chamber runs `speed` times faster than real time and the stability criteria are scaled
by the same factor (remotecal.demo.plan).
"""

from remotecal.demo.plan import DEMO_PROGRAM, MAX_SPEED, DemoPlan, prepare_out

__all__ = ["DEMO_PROGRAM", "MAX_SPEED", "DemoPlan", "prepare_out"]
# `run_demo` is remotecal.demo.chain's: importing it here would load the gateway runtime and
# the virtual devices whenever the command line is parsed (remotecal.cli uses plan.py).
