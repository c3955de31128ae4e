"""One module per callshield subcommand (see cli/main.py)."""
