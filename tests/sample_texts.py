"""The handful of sentences the small text models of the tests are trained on (instant to fit)."""

TEXTS = [
    "the rocket launch put a satellite in orbit",
    "nasa plans another shuttle mission to space",
    "the church choir sang hymns of faith",
    "a prayer from the bible for the congregation",
    "the telescope saw a comet near the moon",
    "god and religion in the sermon on sunday",
] * 4
TOPICS = ["space", "space", "religion", "religion", "space", "religion"] * 4
