"""Command-line group of this package, added to ``musicgym`` through the ``musicgym.cli`` entry point."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's command groups to the ``musicgym`` command."""
