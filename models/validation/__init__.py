"""The validation gate: nothing trades unproven (issue 12). Pure: no I/O."""
