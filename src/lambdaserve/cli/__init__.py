"""The ``lambdaserve`` command line: thin typer commands over the library."""
