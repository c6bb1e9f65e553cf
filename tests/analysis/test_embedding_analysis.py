"""Position-embedding similarity and the patch-embedding filter PCA, on embeddings with known structure."""
import numpy as np
import pytest
import torch

import vitlab
from vitlab.analysis import embedding_filters_pca, position_embedding_similarity, similarity_by_distance


def _model(**kw) -> vitlab.VisionTransformer:
    cfg = dict(img_size=(16, 20), patch_size=4, num_classes=2, embed_dim=64, depth=1, num_heads=2, mlp_dim=64)
    return vitlab.VisionTransformer(vitlab.ViTConfig(**{**cfg, **kw}))


def test_sincos_similarity_peaks_at_the_position_and_falls_off_with_distance():
    sim = position_embedding_similarity(_model(pos_embed="sincos"))
    gh, gw = 4, 5
    assert sim.shape == (gh, gw, gh, gw)
    for i in range(gh):
        for j in range(gw):
            tile = sim[i, j]
            assert tile[i, j] == pytest.approx(1.0)
            assert (np.delete(tile.ravel(), i * gw + j) < 1 - 1e-3).all()  # the peak is unique
            # moving away along a row or a column lowers the similarity at every step
            assert (np.diff(tile[i, j:]) < 0).all() and (np.diff(tile[i, : j + 1]) > 0).all()
            assert (np.diff(tile[i:, j]) < 0).all() and (np.diff(tile[: i + 1, j]) > 0).all()
    by_d = similarity_by_distance(sim)
    assert list(by_d) == [0, 1, 2, 3, 4, 5] and (np.diff(list(by_d.values())) < 0).all()


def test_learned_1d_similarity_excludes_the_class_entry():
    m = _model(img_size=(8, 12))  # grid 2 x 3
    with torch.no_grad():
        m.pos_embed.zero_()
        m.pos_embed[0, 0, :] = 5.0  # the class entry: must not appear anywhere
        for p in range(6):
            m.pos_embed[0, 1 + p, p % 2] = 1.0  # even positions share one direction, odd ones another
    sim = position_embedding_similarity(m).reshape(6, 6)
    parity = np.arange(6) % 2
    np.testing.assert_allclose(sim, (parity[:, None] == parity[None]).astype(float), atol=1e-12)


def test_learned_2d_builds_the_combined_grid_embedding():
    m = _model(img_size=(12, 8), pos_embed="learn2d")  # grid 3 x 2
    with torch.no_grad():
        m.pos_embed_row.copy_(torch.eye(3, 32)[None])  # rows orthogonal, columns contribute nothing
        m.pos_embed_col.zero_()
    sim = position_embedding_similarity(m)
    same_row = (np.arange(3)[:, None, None, None] == np.arange(3)[None, None, :, None])
    np.testing.assert_allclose(sim, np.broadcast_to(same_row, sim.shape).astype(float), atol=1e-12)


def test_no_position_embedding_is_explained():
    with pytest.raises(ValueError, match="no position embeddings"):
        position_embedding_similarity(_model(pos_embed="none"))


def test_filter_components_reconstruct_the_weights():
    m = _model(patch_size=4, in_chans=3)  # D = 64 filters of 3 x 4 x 4 = 48 values
    w = m.patch_embed.proj.weight.detach().double().numpy().reshape(64, -1)
    comps, ratio = embedding_filters_pca(m, n_components=100)
    assert comps.shape == (48, 3, 4, 4) and ratio.shape == (48,)
    v = comps.reshape(48, -1)
    np.testing.assert_allclose(v @ v.T, np.eye(48), atol=1e-10)  # orthonormal
    mean = w.mean(0, keepdims=True)
    np.testing.assert_allclose(mean + (w - mean) @ v.T @ v, w, atol=1e-10)  # all components: exact
    assert ratio.sum() == pytest.approx(1.0) and (np.diff(ratio) <= 1e-15).all()
    few, few_ratio = embedding_filters_pca(m, n_components=5)
    np.testing.assert_allclose(few, comps[:5])
    np.testing.assert_allclose(few_ratio, ratio[:5])
    # the first component is the direction of largest variance: it beats any other unit direction
    centred = w - mean
    other = np.random.default_rng(0).normal(size=48)
    other /= np.linalg.norm(other)
    assert np.var(centred @ v[0]) > np.var(centred @ other)


def test_filter_pca_refuses_a_non_pixel_embedding():
    m = _model()
    m.patch_embed = torch.nn.Conv2d(8, 64, 1)  # stands in for a hybrid's feature-map embedding
    with pytest.raises(ValueError, match="hybrid"):
        embedding_filters_pca(m)
