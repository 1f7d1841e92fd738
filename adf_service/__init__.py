"""adf-service: AutoDeepFuse (PC-DARTS fusion search for multi-modal video action recognition)."""

__version__ = "0.1.0"
