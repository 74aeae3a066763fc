"""The server ``lambdaserve serve`` runs: the front and the console composed into one ASGI app."""
