"""Pure decision logic of stratflow: no I/O, imports nothing of ours but `models`."""
