"""Subcommands of ``ri-gateway``; one module per command, named like the command."""
