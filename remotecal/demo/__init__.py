"""`remotecal demo`: the whole chain on one machine, with no outside service.

    institute: signed start (Ed25519, throwaway key) ─► broker ─► gateway's run control
                                                                        │
    virtual chamber (firmware_bridge) ◄─ setpoints (Modbus controller) ── run engine
       ├─ reference + DUT1 over Modbus TCP (loopback) ─────────────────┐  (steps, stability,
       └─ DUT2, DUT3 as MQTT sensor nodes ─► broker ───────────────────┤   live windows)
                                                                        ▼
                           remotecal gateway (journal) ─► local store (or --influx URL):
                                                          readings, run_event, run_window
                                                                        ▼
                           pipeline: the run's live windows as its points, corrections,
                                     GUM budgets, hysteresis ─► DIR/corrections.csv,
                                                                report.html, certificate.xml

    plan.py      the procedure's setpoints and times, speed, stability criteria, the output folder
    devices.py   the virtual instruments and sensor nodes in the chamber, with their known errors
    broker.py    the loopback broker: Mosquitto when it is on the PATH, else amqtt embedded
    configs.py   site.toml, procedure.toml and pipeline.toml, as a user would write them
    chain.py     `run_demo`: devices, broker, gateway, the institute's signed start, the run,
                 then the pipeline
    live.py      the terminal's live display (`remotecal demo`)

The chamber runs `speed` times faster than real time and the stability criteria and the
procedure's times are scaled by the same factor (remotecal.demo.plan).  With Mosquitto the
start goes through the broker (MQTT 5, as `remotecal run start`); with the embedded amqtt
broker (MQTT 3.1.1 only; run control needs MQTT 5) the same signed start is handed to the
gateway's control service in-process, verified and answered alike.
"""

from remotecal.demo.plan import MAX_SPEED, RUN_ID, DemoPlan, prepare_out

__all__ = ["MAX_SPEED", "RUN_ID", "DemoPlan", "prepare_out"]
# `run_demo` is remotecal.demo.chain's: importing it here would load the gateway runtime and
# the virtual devices whenever the command line is parsed (remotecal.cli uses plan.py).
