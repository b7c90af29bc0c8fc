"""The message path, one module per step: read `consumer.py` first."""
