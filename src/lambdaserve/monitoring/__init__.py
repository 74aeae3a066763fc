"""ML monitoring: what the served model is asked (capture) and whether it drifts from its reference."""
