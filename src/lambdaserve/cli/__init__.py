"""The ``lambdaserve`` command line: thin typer commands over the library.

Every command, and ``serve`` before it starts its models' INIT, first imports all of the
command modules: typer needs each command's signature. So at their top these import only
typer, rich, ``errors``, ``defaults`` and each other; the library (the store, the local
Lambda, boto3's side, httpx) is imported inside the commands that use it.
``tests/unit/test_cli_import_cost.py`` keeps it so.
"""
