"""The web console's back end: the admin API, its pages, sessions, uploads and publishing."""
