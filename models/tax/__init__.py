"""Tax lots from the fills (issue 15): cost basis, realised gains by holding period, wash sales."""
