"""ML monitoring: what the served models were asked and answered (``capture``), whether that
drifts from what they learned (``drift``), and how right they were once labels arrive
(``quality``). Standard library only; of lambdaserve, only ``errors``, ``store`` and
``runtime``'s binning."""
