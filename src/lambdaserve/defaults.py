"""Defaults the command line shows in its help and the library applies, defined once.

Typer reads an option's default when the CLI is imported; the modules that apply these
(the store, the AWS deployment's spec) are too heavy to import for that. So they live
here, in a module that imports nothing, and those modules import them from here.
"""

DEFAULT_STAGE = "test"  # the stage serve, push and publish use unless told otherwise
DEFAULT_PLAN = "default"  # the plan of keys made without one
DEFAULT_TIMEOUT_S = 10  # a new Lambda function's timeout
DEFAULT_LOG_RETENTION_DAYS = 30  # a new function's CloudWatch Logs retention
OFF = -1  # a setting given as none or off (--reserved-concurrency, --rate...): deploy removes it
