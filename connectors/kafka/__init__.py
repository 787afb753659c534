"""Kafka: the broker a run talks to, reading and writing helpers, the Bytewax source."""
