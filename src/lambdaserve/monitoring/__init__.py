"""ML monitoring: what the served models were asked and answered (``capture``), and what
builds on it. Standard library only; of lambdaserve, only ``errors`` and ``store``."""
