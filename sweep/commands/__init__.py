"""One module per `sweep` subcommand; each defines ``register(subparsers)``.

`sweep.cli` discovers the modules here, so adding a command is adding a file.
"""
