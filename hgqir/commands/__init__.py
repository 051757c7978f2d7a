"""Subcommands of the ``hgqir`` command line, one module each (see hgqir.cli.COMMANDS)."""
