"""A conformance checker for upload servers: byte-range PATCH, IETF Resumable Uploads (interop
6–9) and tus 1.0.0, judged by the texts, against any server (``byterange conformance URL``).

- :mod:`.catalogue` — the checks as data (spec, section, level, requirement) and the runner of one;
- :mod:`.byteranges`, :mod:`.ietf`, :mod:`.tus` — the checks of each protocol;
- :mod:`.probe` — raw HTTP/1.1 over sockets (1xx interim responses, stalled and cut bodies, trailers);
- :mod:`.runner` — which checks a run covers; :mod:`.report` — the table and the JSON;
- :mod:`.docs` — docs/conformance.md from the JSON of runs.
"""
