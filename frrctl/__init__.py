"""frrctl: FRRouting controller for pure Layer-3 routed virtual machines."""

__version__ = "0.1.0"
