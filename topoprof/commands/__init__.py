"""CLI subcommands, one module each; every module has ``register(subparsers)``.

:data:`COMMAND_MODULES` lists them in the order ``topoprof --help`` shows them.
"""

COMMAND_MODULES = [
    "topoprof.commands.summary",
    "topoprof.commands.reports",
    "topoprof.commands.run",
    "topoprof.commands.analysis",
]


def non_negative_int(text: str) -> int:
    """argparse type for counts such as ``--top``: a clear error for ``-3`` or ``ten``."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value
