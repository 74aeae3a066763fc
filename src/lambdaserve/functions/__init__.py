"""The local Lambda service: the functions a model becomes, and the processes they run in.

``pythons`` decides which Python runs a bundle (this one when its versions match the
bundle's pins, else a cached virtual environment built from the pins); ``function`` is a
function version with its execution environments (concurrency, batching, limits), forked
from an INIT template by ``processes`` or run as an awslambdaric client of ``runtime_api``;
``logbook``, ``metrics`` and ``series`` keep what they did; ``invoke`` and ``package`` run
one function for the CLI.
"""
