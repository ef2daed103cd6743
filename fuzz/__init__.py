"""Fuzzing of every sans-IO decoder and header parser, and of the app over HTTP.

Run ``python -m fuzz --seconds 60`` (see ``docs/fuzzing.md``); ``fuzz.targets`` lists the
targets, ``fuzz.runner`` is the loop, ``fuzz.http`` drives the Flask app.
"""
