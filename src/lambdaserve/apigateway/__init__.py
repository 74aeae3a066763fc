"""The front: what API Gateway does before and after it calls Lambda.

``gateway.Gateway.handle(Request) -> Response`` knows nothing of HTTP servers: it routes,
checks API keys and usage plans (``usage``), picks the stage's version (canary included),
builds the proxy event and turns the function's answer into API Gateway's response
(``proxy``; ``errors`` holds AWS's own error bodies). ``asgi`` adapts it to an ASGI server;
``invoke_api`` is Lambda's Invoke API and ``openapi`` the stage's OpenAPI document.
"""
