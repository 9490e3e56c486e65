"""Exceptions that the CLI turns into a clear message and an exit status."""

from __future__ import annotations


class FrrctlError(Exception):
    """A failure the operator can act on; `exit_code` is what the CLI returns."""

    exit_code = 1


class UsageError(FrrctlError):
    """Bad input: inventory, addresses, arguments. Exit status 2, nothing changed."""

    exit_code = 2


class InventoryError(UsageError):
    """The fleet inventory is invalid; the message names the host and the key."""


class CheckError(FrrctlError):
    """A rendered file was rejected by the daemon's own parser (vtysh -C)."""
