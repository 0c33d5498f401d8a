"""The device side: register maps of instruments and virtual devices that serve them.

    chamber      a climatic chamber (setpoint program, first-order response) and the sensors in it
    profile      device profiles: TOML register maps under `profiles/`
    modbus       virtual Modbus TCP / RTU servers (pymodbus) with fault injection
    instrument   a chamber's sensors served with a profile's register map
    simulate     `remotecal simulate -c SIM.toml`: load_sim_config, run_simulation
"""
