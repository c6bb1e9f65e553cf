"""`vitlab serve`'s JSON API through Starlette's TestClient: the model card, predictions that match
`vitlab predict`, every kind of bad input answered with a 4xx (and the server still serving), and
concurrent requests that keep their own results."""
from __future__ import annotations

import io
import json
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the 'serve' extra is not installed (pip install 'vitlab[serve]')")
pytest.importorskip("multipart", reason="python-multipart (the 'serve' extra) is not installed")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")

from starlette.testclient import TestClient  # noqa: E402

from vitlab.analysis import predict_files  # noqa: E402
from vitlab.serve.app import MAX_BYTES, MAX_PIXELS, create_app, example_count, load_served_model  # noqa: E402


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (a decompression bomb's shape)."""
    data = bytearray(png(np.zeros((1, 1), np.uint8)))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    return bytes(data)


def post(client: TestClient, data: bytes, name: str = "x.png", ctype: str = "image/png", **kw):
    return client.post("/predict", files={"image": (name, data, ctype)}, **kw)


@pytest.fixture(scope="module")
def client(explorer):
    with TestClient(create_app(explorer)) as c:
        yield c


def test_model_card_describes_the_run(client, tiny_run, explorer):
    card = client.get("/model").json()
    final = json.loads((tiny_run / "final.json").read_text())
    assert card["final"]["top1"] == final["top1"] and card["final"]["n"] == final["n"]
    assert card["training"]["dataset"] == "digits"
    assert card["parameters"] == sum(p.numel() for p in explorer.model.parameters())
    assert card["architecture"]["patch_size"] == 2 and card["depth"] == 2 and card["num_heads"] == 2
    assert card["classes"] == [str(i) for i in range(10)]
    assert [e["label"] for e in card["examples"]] == [str(i) for i in range(10)]  # one of every class
    for e in card["examples"]:
        r = client.get(e["url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    figures = {f["url"].split("/")[-1] for f in card["figures"]}
    assert {"pos_embed_similarity.png", "attention_distance.png"} <= figures
    for f in card["figures"]:
        assert client.get(f["url"]).content.startswith(b"\x89PNG")
    assert client.get("/examples/10.png").status_code == 404
    assert card["limits"] == {"bytes": MAX_BYTES, "pixels": MAX_PIXELS}  # the page checks a file's size first
    assert client.get("/figures/nope.png").status_code == 404


def test_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="file-input"' in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_every_class_has_an_example_while_they_fit():
    assert [example_count(k) for k in (2, 8, 10, 12, 13, 1000)] == [8, 8, 10, 12, 8, 8]


def test_predict_matches_vitlab_predict(client, explorer, tmp_path):
    image = client.get("/examples/3.png").content
    r = post(client, image, "three.png")
    assert r.status_code == 200, r.text
    out = r.json()
    model = explorer.model
    assert out["file"] == "three.png" and out["predicted"] == out["top"][0]["label"]
    assert len(out["top"]) == 5
    probs = [t["probability"] for t in out["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert out["grid"] == [4, 4] and np.asarray(out["rollout"]).shape == (4, 4)
    attn = np.asarray(out["attention"])
    assert attn.shape == (2, 2, 16)  # layers, heads, patches
    assert (attn >= 0).all() and (attn.sum(-1) < 1).all()  # the class token keeps some attention for itself
    assert out["image"].startswith("data:image/png;base64,")
    (tmp_path / "three.png").write_bytes(image)
    [ref] = predict_files(model, [tmp_path / "three.png"], topk=5)
    assert [t["label"] for t in out["top"]] == [name for name, _ in ref.top]
    np.testing.assert_allclose(probs, [q for _, q in ref.top], atol=1e-5)
    assert len(post(client, image, params={"topk": "2"}).json()["top"]) == 2


def test_images_of_any_mode_and_size(client):
    rng = np.random.default_rng(0)
    rgb = png(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8))
    rgba = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), "RGBA").save(rgba, format="PNG")
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(jpeg, format="JPEG")
    for data, ctype in ((rgb, "image/png"), (rgba.getvalue(), "image/png"), (jpeg.getvalue(), "image/jpeg"),
                        (rgb, "application/octet-stream")):
        r = post(client, data, ctype=ctype)
        assert r.status_code == 200, r.text


def _truncated_png() -> bytes:
    data = png(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8))
    return data[: len(data) // 2]


BAD = {
    "text declared as text": (b"hello, world", "notes.txt", "text/plain", 415, "not an image"),
    "pdf declared as pdf": (b"%PDF-1.4\n%...", "paper.pdf", "application/pdf", 415, "not an image"),
    "text declared as png": (b"hello, world", "fake.png", "image/png", 415, "not a recognised image format"),
    "truncated png": (_truncated_png(), "cut.png", "image/png", 400, "truncated"),
    "empty file": (b"", "empty.png", "image/png", 400, "empty"),
    "decompression bomb": (bomb_png(30000, 30000), "bomb.png", "image/png", 413, "decompression bomb"),  # Pillow refuses it at open
    "over the pixel limit": (bomb_png(10000, 5000), "big.png", "image/png", 413, "the limit is 40,000,000"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_uploads_get_a_4xx_with_a_reason(client, case):
    data, name, ctype, status, words = BAD[case]
    r = post(client, data, name, ctype)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert post(client, client.get("/examples/0.png").content).status_code == 200  # still serving


def test_bad_requests_get_a_4xx_with_a_reason(client):
    good = client.get("/examples/0.png").content
    r = client.post("/predict", content=good, headers={"content-type": "image/png"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
    r = client.post("/predict", json={"image": "x"})
    assert r.status_code == 415
    r = client.post("/predict", files={"picture": ("x.png", good, "image/png")})
    assert r.status_code == 400 and "field 'image'" in r.json()["error"]
    r = client.post("/predict", data={"image": "not a file"}, files={"other": ("x.png", good, "image/png")})
    assert r.status_code == 400
    r = client.post("/predict", content=b"--xyz\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\""
                                        b"\r\n\r\n" + good[:20], headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 400, r.text  # a multipart body cut short
    r = post(client, good, params={"topk": "0"})
    assert r.status_code == 400 and "topk" in r.json()["error"]
    assert client.get("/predict").status_code == 405


def test_byte_and_pixel_limits_are_settable(explorer):
    image = png(np.random.default_rng(2).integers(0, 256, (100, 100), dtype=np.uint8))
    with TestClient(create_app(explorer, max_bytes=len(image) - 1)) as c:
        r = post(c, image)
        assert r.status_code == 413 and "limit" in r.json()["error"]
        r = c.post("/predict", files={"image": ("x.png", image, "image/png")},
                   headers={"content-length": str(10**9)})
        assert r.status_code == 413
    with TestClient(create_app(explorer, max_pixels=100 * 100 - 1)) as c:
        r = post(c, image)
        assert r.status_code == 413 and "100x100" in r.json()["error"]
    with TestClient(create_app(explorer, max_pixels=100 * 100)) as c:
        assert post(c, image).status_code == 200


def test_concurrent_requests_keep_their_own_results(client):
    """Requests for two different images, many at once: each answer equals that image's answer alone."""
    images = [client.get(f"/examples/{k}.png").content for k in (0, 7)]
    alone = [post(client, im).json() for im in images]
    assert alone[0]["rollout"] != alone[1]["rollout"]  # different answers, so a mix-up would show
    start = threading.Barrier(8)

    def ask(k: int) -> tuple[int, dict]:
        start.wait()
        return k % 2, post(client, images[k % 2]).json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    for which, out in answers:
        for key in ("top", "rollout", "attention", "image"):
            assert out[key] == alone[which][key]


def test_load_served_model_checkpoints(tiny_run):
    import torch

    final = load_served_model(tiny_run)
    last = load_served_model(tiny_run, "last")
    best = load_served_model(tiny_run, "best")
    assert not final.training and not last.training
    for a, b in zip(final.state_dict().values(), last.state_dict().values()):
        assert torch.equal(a, b)  # no EMA: the final model is the last step's weights
    assert best.cfg.class_names == final.cfg.class_names
    one = sorted((tiny_run / "checkpoints").glob("step_*.pt"))[0]
    assert load_served_model(tiny_run, str(one)).cfg.num_classes == 10
    with pytest.raises(ValueError, match="has no best.pt"):  # vitlab.load_model's CheckpointError
        load_served_model(tiny_run / "model", "best")


def test_a_bare_checkpoint_gets_a_card_without_run_data(explorer, tmp_path):
    """A save_pretrained directory outside any run: no training data or accuracy, no examples; the
    position-embedding figure is computed, and the card says what is missing."""
    from vitlab import save_pretrained
    from vitlab.serve.app import build_explorer

    save_pretrained(explorer.model, tmp_path / "bare")
    with TestClient(create_app(build_explorer(tmp_path / "bare", device="cpu"))) as c:
        card = c.get("/model").json()
        assert card["training"] is None and card["final"] is None and card["examples"] == []
        assert [f["url"] for f in card["figures"]] == ["/figures/pos_embed_similarity.png"]
        assert any("attention distance" in n for n in card["notes"])
        assert post(c, png(np.zeros((8, 8), np.uint8))).status_code == 200


def test_headless_models_are_refused(tmp_path):
    from vitlab import create_model, save_pretrained

    save_pretrained(create_model("vit_mnist", num_classes=0, img_size=8, patch_size=2, in_chans=1, embed_dim=32,
                                 depth=1, num_heads=2, mlp_dim=32), tmp_path / "headless")
    with pytest.raises(ValueError, match="no classification head"):
        load_served_model(tmp_path / "headless")
