"""Shared fixtures. Command-line fixtures live in helpers_cli.py and are registered here."""

from helpers_cli import fleet, fleet_template  # noqa: F401 - pytest fixtures
from helpers_semantics import ab  # noqa: F401 - pytest fixture: an initialised appban database
