"""gatekeeper: a project gating system."""

__version__ = "0.1.0"
