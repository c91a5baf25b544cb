"""Pure rules: no I/O, no frameworks, nothing from outside the standard library."""
