"""``python -m lambdaserve``: the same as the ``lambdaserve`` command."""

from lambdaserve.cli.app import main

main()
