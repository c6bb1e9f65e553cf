"""`vitlab analyze` writes the numbers the analysis functions give when called directly: images
normalised with the model's own (non-symmetric) mean/std, attention distance averaged over images
(batches weighted by their size: the last batch here is smaller), filters and similarity as computed."""
import json

import numpy as np
import pytest
import torch

import vitlab
from vitlab.analysis import (analyze, collect_attention, embedding_filters_pca, mean_attention_distance,
                             position_embedding_similarity, similarity_by_distance)

MEAN, STD = (0.2, 0.45, 0.7), (0.3, 0.2, 0.1)


@pytest.fixture
def setup(tmp_path):
    cfg = vitlab.ViTConfig(img_size=12, patch_size=4, num_classes=3, embed_dim=32, depth=2, num_heads=2, mlp_dim=64,
                           mean=MEAN, std=STD)
    model = vitlab.VisionTransformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)  # peaked, input-dependent attention; a head that predicts something
    model.save_pretrained(tmp_path / "ck")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 3, 12, 12), dtype=np.uint8)
    labels = np.arange(10) % 3
    np.savez(tmp_path / "d.npz", x_test=images, y_test=labels)
    return model, images, labels, tmp_path


def test_analyze_json_equals_direct_calls_of_the_analysis_functions(setup):
    model, images, labels, tmp = setup
    summary = analyze(vitlab.load_model(tmp / "ck"), str(tmp / "d.npz"), tmp / "out", num_images=10, batch_size=4,
                      num_rollout=2, n_components=6)  # batches of 4, 4 and 2: an unweighted mean would differ
    x = torch.from_numpy(images).double() / 255.0
    x = ((x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)).float()
    logits, attns, grid = collect_attention(model, x)
    want = mean_attention_distance(attns, grid, (4.0, 4.0), 1)
    got = json.loads((tmp / "out" / "attention_distance.json").read_text())
    assert got["num_images"] == 10
    np.testing.assert_allclose(np.array(got["distance"]), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["mean_per_layer"], want.mean(1), rtol=1e-5, atol=1e-6)
    assert np.ptp(want) > 0.1  # heads differ: the comparison has something to compare
    assert summary["sample_accuracy"] == pytest.approx(float((logits.argmax(1).numpy() == labels).mean()))

    comps, ratio = embedding_filters_pca(model, 6)
    filt = json.loads((tmp / "out" / "filters.json").read_text())
    np.testing.assert_allclose(np.array(filt["components"]), comps, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(filt["explained_variance_ratio"], ratio, rtol=1e-5, atol=1e-7)
    sim = position_embedding_similarity(model)
    pos = json.loads((tmp / "out" / "pos_embed_similarity.json").read_text())
    np.testing.assert_allclose(np.array(pos["similarity"]), sim, rtol=1e-5, atol=1e-6)
    assert {int(k): v for k, v in pos["mean_by_distance"].items()} == pytest.approx(similarity_by_distance(sim))
