"""Types no single stage owns: messages and records, events, commands, ids, money rounding."""
