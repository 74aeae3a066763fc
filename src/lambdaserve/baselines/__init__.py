"""Servers lambdaserve is compared with: the post's Flask app (``loadtest --compare flask``
and the benchmarks). Not imported by anything else; Flask and gunicorn are needed to run it."""
