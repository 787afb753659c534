"""Pure cores of the simulators tests and the emulator run on (the matching engine)."""
