"""REINFORCE with a learned baseline, as an rlkit plugin (entry point ``reinforce``)."""

__version__ = "0.1.0"
