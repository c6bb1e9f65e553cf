"""The web app behind `vitlab serve`: one model, a JSON API, and the static page that draws its answers.

    GET  /                 the page (static/index.html, app.js, style.css: no build step, no CDN)
    GET  /model            the model card: architecture, parameters, classes, training data and accuracy,
                           analysis figures, example images and the upload limits (JSON)
    POST /predict          multipart/form-data with the image in field ``image`` (``?topk=5``): top-k
                           classes, the attention rollout and the class token's attention per layer and head
    GET  /examples/K.png   a few images of the run's own test data
    GET  /figures/NAME.png position-embedding similarity, mean attention distance, embedding filters

Bad input (not an image, truncated, too many bytes or pixels, wrong content type) is answered with a
4xx and ``{"error": "..."}``; nothing a client sends can stop the server.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..analysis import analyze, attention_pass, attention_rollout, plot_position_similarity, position_embedding_similarity
from ..analysis.predict import class_names
from ..utils.device import pick_device
from ..data.pipeline import materialize
from ..data import ImageTooLargeError, decode_image, image_to_array, open_dataset
from ..data.transforms import EvalTransform
from ..models.vit import VisionTransformer
from ..weights.runs import CONFIG_FILE, FINAL_FILE

PathLike = str | os.PathLike
log = logging.getLogger("vitlab.serve")

STATIC = Path(__file__).with_name("static")
MAX_BYTES = 20 * 1024 * 1024  # an upload larger than this is refused before it is decoded
# An upload over the limit but not over this is read to its end (and dropped) before the 413 is sent: a client
# that sends its whole request before it reads (Python's urllib, curl without Expect) then gets the message
# instead of a connection reset. A larger one is answered at once, and its connection closed.
DRAIN_BYTES = 512 * 1024 * 1024
MAX_PIXELS = 40_000_000  # ~ 8000 x 5000; checked from the image header, before decoding
NUM_EXAMPLES = 8  # example images on the page; one a class instead when there are at most EVERY_CLASS classes
EVERY_CLASS = 12
DISPLAY_SIDE = 256  # the longer side of the "what the model sees" image sent back with each prediction
# Analysis figures vitlab analyze writes, in the order the page shows them: stem -> (title, caption).
FIGURES = {
    "pos_embed_similarity": ("Position-embedding similarity (paper Fig. 7 centre)",
                             "Tile (i, j) is the cosine similarity of patch (i, j)'s position embedding to every "
                             "other patch's."),
    "attention_distance": ("Mean attention distance (paper Fig. 7 right)",
                           "Per layer and head, how far in pixels the attention reaches, averaged over test images."),
    "filters": ("Embedding filters (paper Fig. 7 left)",
                "Principal components of the patch-embedding filters."),
}


class BadUpload(Exception):
    """A request the server refuses, with the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- the model ------------------------------------------------------------------------------------------


def load_served_model(path: PathLike, checkpoint: str | None = None) -> VisionTransformer:
    """The one place serve loads its model: vitlab.load_model (eval mode; ``checkpoint`` best | last |
    a file picks a training checkpoint of a run), refused when it has no attention or head to show."""
    from ..weights import load_model

    model = load_model(path, checkpoint=checkpoint)
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"{path} holds a {type(model).__name__}; vitlab serve shows a Vision Transformer's attention")
    if model.cfg.num_classes == 0:
        raise ValueError(f"{path} has no classification head (num_classes=0, e.g. a masked-patch pretraining run); "
                         "serve a fine-tuned classifier")
    return model


def _run_dir(path: Path) -> Path | None:
    """The training run a served path belongs to (RUN or RUN/model), or None."""
    for d in (path, path.parent):
        if d.is_dir() and (d / CONFIG_FILE).is_file():
            return d
    return None


# -- what the page shows besides predictions ------------------------------------------------------------


@dataclass
class Explorer:
    """The served model with its card, example images and analysis figures; ``predict`` is thread-safe:
    the forward pass writes no module state and every request has its own tensors, so concurrent
    requests share the model without a lock (tests/serve check two at once)."""

    model: VisionTransformer
    card: dict[str, Any]
    examples: list[tuple[str, bytes]] = field(default_factory=list)  # (label, PNG bytes)
    figures: dict[str, Path] = field(default_factory=dict)  # stem -> PNG file
    workdir: tempfile.TemporaryDirectory | None = None  # holds figures computed at start

    @torch.inference_mode()
    def predict(self, image: Image.Image, topk: int = 5) -> dict[str, Any]:
        """Top-k classes, the rollout map (gh, gw) and the class token's attention to every patch per
        (layer, head), all for one decoded image, preprocessed as `vitlab predict` does."""
        model, cfg = self.model, self.model.cfg
        tf = EvalTransform.for_model(cfg)
        x = tf.image(image)[None]
        x = x.to(next(model.parameters()).device)
        logits, attns, grid, readout, _ = attention_pass(model, x)
        rollout = attention_rollout(attns, model.num_prefix_tokens, grid, readout=readout)[0]
        p = model.num_prefix_tokens
        # A class token's row per head (registers left out); a gap or map model pools the patches, so the
        # mean patch row stands in.
        token = cfg.classifier == "token"
        cls = [(a[0, :, 0, p:] if token else a[0, :, p:, p:].mean(1)).float().cpu().numpy() for a in attns]
        prob, idx = logits[0].float().softmax(-1).topk(min(topk, cfg.num_classes))
        names = class_names(model)
        top = [{"label": names[c], "index": c, "probability": round(q, 6)} for q, c in zip(prob.tolist(), idx.tolist())]
        return {
            "predicted": top[0]["label"],
            "top": top,
            "grid": list(grid),
            "input_size": list(cfg.img_size),
            "image": _png_data_url(_model_view(image, tf)),
            "rollout": np.round(rollout, 6).tolist(),
            "attention": [np.round(c, 6).tolist() for c in cls],  # [layer][head][gh * gw]
            "class_token": token,
        }


def _model_view(image: Image.Image, tf: EvalTransform) -> np.ndarray:
    """The image as the model sees it (its crop, its aspect ratio, its channels), at a size people can look at."""
    h, w = tf.img_size
    s = DISPLAY_SIDE / max(h, w)
    arr = image_to_array(image, channels=tf.norm.in_chans)
    box = tf.preprocess.crop_box(*arr.shape[:2])
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(arr.squeeze()).resize(size, Image.Resampling.BILINEAR, box=box))


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _png_data_url(arr: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(_png(arr)).decode()


def build_explorer(
    path: PathLike,
    checkpoint: str | None = None,
    device: str | torch.device | None = None,
) -> Explorer:
    """Load the model and gather what the page shows: the card (with the run's final.json), examples
    from the run's test data, and the analysis figures (the run's own, else computed now with
    vitlab analyze on its test data, else the position-embedding similarity alone)."""
    path = Path(path)
    model = load_served_model(path, checkpoint).to(pick_device(device))
    cfg = model.cfg
    run = _run_dir(path)
    card: dict[str, Any] = {
        "source": str(path),
        "checkpoint": checkpoint,  # None: the path as vitlab predict reads it (a run's model/)
        "architecture": {k: v for k, v in cfg.to_dict().items() if k not in ("class_names",)},
        "parameters": sum(p.numel() for p in model.parameters()),
        "classes": class_names(model),
        "class_token": cfg.classifier == "token",
        "depth": len(model.blocks),
        "num_heads": cfg.num_heads,
        "training": None,
        "final": None,
        "notes": [],
    }
    data, data_dir = None, None
    if run is not None:
        from ..train import load_config

        tcfg = load_config(run / CONFIG_FILE)
        data, data_dir = tcfg.data.dataset, tcfg.data.data_dir
        card["training"] = {"run": str(run), "dataset": data, "model": tcfg.model.name or tcfg.model.weights,
                            "batch_size": tcfg.data.batch_size,
                            "optimizer": tcfg.optim.name, "lr": tcfg.optim.lr}
        if (run / FINAL_FILE).is_file():
            final = json.loads((run / FINAL_FILE).read_text())
            card["final"] = {k: final[k] for k in ("objective", "split", "top1", "top5", "n", "epochs", "steps",
                                                   "train_time_s", "device") if k in final}
        else:
            card["notes"].append("the run has no final.json (not finished): no test accuracy to show")
    explorer = Explorer(model, card)
    ds = None
    if data is not None:
        try:
            ds = open_dataset(data, "test", data_dir, in_memory=False)
        except (OSError, ValueError) as e:
            card["notes"].append(f"no example images: the run's data set {data!r} could not be opened ({e})")
    if ds is not None:
        explorer.examples = _pick_examples(ds, example_count(ds.num_classes), EvalTransform.for_model(model.cfg))
    _gather_figures(explorer, run, ds, data, data_dir)
    card["examples"] = [{"url": f"/examples/{k}.png", "label": lab} for k, (lab, _) in enumerate(explorer.examples)]
    card["figures"] = [{"url": f"/figures/{stem}.png", "title": title, "caption": caption}
                       for stem, (title, caption) in FIGURES.items() if stem in explorer.figures]
    return explorer


def example_count(num_classes: int) -> int:
    """How many example images the page shows: one of every class where they fit on a line or two (all ten
    of Fashion-MNIST's, bag and ankle boot included), else NUM_EXAMPLES."""
    return max(NUM_EXAMPLES, num_classes) if num_classes <= EVERY_CLASS else NUM_EXAMPLES


def _pick_examples(ds, n: int, tf: EvalTransform) -> list[tuple[str, bytes]]:
    """The first test image of each class in class order (then the next images, for fewer classes
    than ``n``): a spread of classes rather than whatever the file's first n images are."""
    labels = ds.labels
    order = [int((labels == c).nonzero()[0]) for c in range(ds.num_classes) if (labels == c).any()][:n]
    taken = set(order)
    order += [i for i in range(min(len(ds), 2 * n)) if i not in taken][: n - len(order)]
    shown = materialize(ds, tf, torch.as_tensor(order, dtype=torch.int64))  # what the model sees
    return [(shown.classes[int(y)], _png(x.permute(1, 2, 0).squeeze(-1).numpy()))
            for x, y in zip(shown.images, shown.labels)]


def _gather_figures(explorer: Explorer, run: Path | None, ds, data: str | None, data_dir: str | None) -> None:
    for d in ([run / "analysis", run] if run is not None else []):
        found = {stem: d / f"{stem}.png" for stem in FIGURES if (d / f"{stem}.png").is_file()}
        if found:
            explorer.figures = found
            return
    explorer.workdir = tempfile.TemporaryDirectory(prefix="vitlab-serve-")
    out = Path(explorer.workdir.name)
    if ds is not None:
        log.info("computing analysis figures on %s (test split)", data)
        try:
            analyze(explorer.model, data, out, num_images=64, num_rollout=0, data_dir=data_dir)
        except ValueError as e:  # e.g. a data set that does not fit the model
            explorer.card["notes"].append(f"no analysis figures: vitlab analyze on {data!r} failed ({e})")
    else:
        try:
            plot_position_similarity(position_embedding_similarity(explorer.model), out / "pos_embed_similarity.png")
        except ValueError as e:  # pos_embed='none'
            explorer.card["notes"].append(f"no position-embedding figure: {e}")
        explorer.card["notes"].append("mean attention distance needs the run's test data, which is not available")
    explorer.figures = {stem: out / f"{stem}.png" for stem in FIGURES if (out / f"{stem}.png").is_file()}


# -- HTTP -----------------------------------------------------------------------------------------------


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_upload(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """The uploaded file's bytes and name, or BadUpload saying what is wrong with the request."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise BadUpload(415, "POST /predict takes multipart/form-data with the image file in the field 'image' "
                             f"(got Content-Type {ctype or 'none'!r}); e.g. curl -F image=@photo.jpg URL/predict")
    length = request.headers.get("content-length")
    if length is None:
        raise BadUpload(411, "the request has no Content-Length; send the upload with its length")
    if not length.isdigit():
        raise BadUpload(400, f"Content-Length {length!r} is not a number of bytes")
    if int(length) > max_bytes + 64 * 1024:  # the file plus room for the multipart headers
        if int(length) <= DRAIN_BYTES:
            async for _ in request.stream():
                pass
        raise BadUpload(413, f"the upload is {int(length):,} bytes; the limit is {max_bytes:,} bytes "
                             f"({max_bytes / 2**20:g} MiB) a file")
    try:
        form = await request.form(max_files=1, max_fields=8)
    except Exception as e:  # malformed multipart body: the parser's message says where
        raise BadUpload(400, f"could not parse the multipart form ({getattr(e, 'detail', e)})") from None
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise BadUpload(400, "no file in the form field 'image'")
        name = upload.filename or "the upload"
        declared = (upload.content_type or "").split(";")[0].strip().lower()
        if declared and not declared.startswith("image/") and declared != "application/octet-stream":
            raise BadUpload(415, f"{name} is {declared}, not an image; send a PNG, JPEG, WebP, GIF, BMP or TIFF file")
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise BadUpload(413, f"{name} is larger than the limit of {max_bytes:,} bytes")
        if not data:
            raise BadUpload(400, f"{name} is empty")
        return data, name
    finally:
        await form.close()  # removes the spooled temporary file


def _decode(data: bytes, name: str, max_pixels: int) -> Image.Image:
    try:
        return decode_image(io.BytesIO(data), name, max_pixels=max_pixels)
    except ImageTooLargeError as e:
        raise BadUpload(413, str(e)) from None
    except ValueError as e:
        status = 415 if isinstance(e.__cause__, UnidentifiedImageError) else 400
        raise BadUpload(status, str(e)) from None


def create_app(
    explorer: Explorer,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Starlette:
    """The Starlette app serving ``explorer``; run it with any ASGI server (`vitlab serve` uses uvicorn)."""

    async def predict(request: Request) -> Response:
        topk = request.query_params.get("topk", "5")
        if not topk.isdigit() or int(topk) < 1:
            return _error(400, f"topk must be a positive integer, got {topk!r}")
        try:
            data, name = await _read_upload(request, max_bytes)
            # Decoding and the forward pass are CPU work: off the event loop, so requests overlap.
            image = await run_in_threadpool(_decode, data, name, max_pixels)
        except BadUpload as e:
            return _error(e.status, str(e))
        result = await run_in_threadpool(explorer.predict, image, int(topk))
        return JSONResponse({"file": name, **result})

    async def model_card(request: Request) -> Response:
        return JSONResponse({**explorer.card, "limits": {"bytes": max_bytes, "pixels": max_pixels}})

    async def example(request: Request) -> Response:
        k = request.path_params["k"]
        if not 0 <= k < len(explorer.examples):
            return _error(404, f"no example {k}; there are {len(explorer.examples)}")
        return Response(explorer.examples[k][1], media_type="image/png")

    async def figure(request: Request) -> Response:
        path = explorer.figures.get(request.path_params["name"])
        if path is None:
            return _error(404, f"no figure {request.path_params['name']!r}; see GET /model for the list")
        return FileResponse(path, media_type="image/png")

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    routes = [
        Route("/", index),
        Route("/model", model_card),
        Route("/predict", predict, methods=["POST"]),
        Route("/examples/{k:int}.png", example),
        Route("/figures/{name}.png", figure),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.explorer = explorer
    return app
