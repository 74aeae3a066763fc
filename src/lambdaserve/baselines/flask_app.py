"""The baseline: the blog post's style of server, a minimal Flask app under gunicorn.

    MODEL_PATH=examples/newsgroups/model.pickle \
        gunicorn -w 2 -b 127.0.0.1:8001 lambdaserve.baselines.flask_app:app

Each gunicorn worker imports this module, so each loads its own copy of the model (no
``--preload``, as the post does it). POST /predict takes a JSON array of inputs and
answers ``model.predict(inputs).tolist()`` as JSON. Nothing else: no keys, no logs, no
validation, which is what makes it the fair lower bound of a hand-written server.
"""

from __future__ import annotations

import os
import pickle

from flask import Flask, Response, jsonify, request

with open(os.environ["MODEL_PATH"], "rb") as f:
    model = pickle.load(f)

app = Flask(__name__)


@app.post("/predict")
def predict() -> Response:
    return jsonify(model.predict(request.get_json(force=True)).tolist())
