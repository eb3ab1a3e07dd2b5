"""The ``charlstm`` command: the Typer app in ``charlstm.cli.app``, one module per group of commands."""
