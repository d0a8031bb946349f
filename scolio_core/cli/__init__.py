"""The `scolio` command line: `main.py` holds the table of subcommands, one module per command."""
