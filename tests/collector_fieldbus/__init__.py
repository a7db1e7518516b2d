"""Field-protocol sources (Modbus TCP, DL/T 645), device profiles, the load model and the simulators."""
