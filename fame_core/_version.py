"""The one version string of fame_core (package metadata, checkpoints, the CLI)."""

__version__ = "0.1.0"
