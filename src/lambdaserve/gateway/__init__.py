"""The local API Gateway + Lambda emulator behind ``lambdaserve serve``.

``core.Gateway.handle(Request) -> Response`` knows nothing of HTTP servers: it routes,
checks API keys and usage plans, picks the stage's version (canary included) and invokes
the function. ``asgi.py`` is the thin adapter that uvicorn serves; ``functions.py`` and
``environments.py`` run the execution environments; ``admin.py``, ``metrics.py``,
``invoke_api.py`` and ``runtime_api.py`` serve the rest of the surface.
"""
