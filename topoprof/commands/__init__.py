"""CLI subcommands, one module each; every module has ``register(subparsers)``.

:data:`COMMAND_MODULES` lists them in the order ``topoprof --help`` shows them.
"""

COMMAND_MODULES = [
    "topoprof.commands.summary",
    "topoprof.commands.reports",
    "topoprof.commands.run",
    "topoprof.commands.analysis",
]
