"""tuspyserver's router in a FastAPI app, as its README shows, for ``python -m bench --peers``.

Served by uvicorn (``uvicorn tuspy_app:app --app-dir bench/peers``) from the peers' own venv, with
the upload directory in ``BENCH_TUSPY_DIR``: tus 1.0 on ``/files``.
"""

import os

from fastapi import FastAPI
from tuspyserver import create_tus_router

app = FastAPI()
app.include_router(create_tus_router(prefix="files", files_dir=os.environ["BENCH_TUSPY_DIR"]))
