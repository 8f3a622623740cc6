"""Operator commands that talk to the web API: `status`, `builds`, `build`, `recheck` (see cli.py)."""
