"""lambdaserve: from a model file to a real-time prediction endpoint.

This module stays tiny on purpose: the Lambda image copies it beside ``runtime/``,
and importing it must cost nothing.
"""

__version__ = "0.1.0"
