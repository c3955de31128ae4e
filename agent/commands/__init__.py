"""One module per callshield subcommand (see agent/cli.py)."""
