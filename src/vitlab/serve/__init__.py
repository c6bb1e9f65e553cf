"""`vitlab serve`: a local web page to explore what a trained ViT sees, and the JSON API behind it.

app.py     load_served_model, build_explorer (model + card + examples + figures), create_app (Starlette)
static/    the page: index.html, app.js, style.css (plain files, no build step, nothing from the internet)

The web stack (Starlette, uvicorn, python-multipart) is the optional ``serve`` extra.
"""
from __future__ import annotations

import os

from ..errors import require

PathLike = str | os.PathLike


def serve(
    path: PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    checkpoint: str | None = None,
    device: str | None = None,
) -> None:
    """Load the model, print the page's URL and serve until Ctrl-C. Binds to localhost unless told
    otherwise: the page lets anyone who reaches it run the model."""
    for module, package in (("starlette", "starlette"), ("multipart", "python-multipart"), ("uvicorn", "uvicorn")):
        require(module, "serve", package, "vitlab serve")
    import uvicorn

    from .app import build_explorer, create_app

    explorer = build_explorer(path, checkpoint, device)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    print(f"vitlab serve: {path} at {url} (Ctrl-C to stop)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"vitlab serve: listening on {host}: reachable from other machines", flush=True)
    uvicorn.run(create_app(explorer), host=host, port=port, log_level="info")


__all__ = ["serve"]
