"""The Lambda handler and what it needs, identical in the Lambda image and locally.

Constraints: this package imports only the standard library, the model's own libraries
(lazily, when a model of that format is loaded) and boto3 (only for a model in S3).
It imports nothing else from lambdaserve: the image copies it on its own, and a cold
start pays for every import.
"""
