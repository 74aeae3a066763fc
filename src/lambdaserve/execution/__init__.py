"""Execution environments on this machine: the Python they run in, and the worker process.

``environments`` decides which Python runs a bundle (this one when its versions match
the bundle's pins, else a cached virtual environment built from the pins) and
``worker`` runs one execution environment as a child process speaking to
``lambdaserve.runtime.bootstrap``. ``invoke`` puts them together for one invocation.
"""
