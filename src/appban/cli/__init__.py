"""The ``appban`` command line (SPEC: Command line). Thin: parse, call, print.

``_root.py`` holds what every command shares and the entry point; each other module
is one group of commands, registered on the root group when imported here.
"""

from appban.cli import (  # noqa: F401
    audit,
    catalog,
    database,
    devices,
    exemptions,
    gate,
    inventory,
    notify,
    policy,
    serve,
    sources,
)
from appban.cli._root import cli, main

__all__ = ["cli", "main"]
