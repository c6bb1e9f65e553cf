"""Looking inside a ViT: the paper's section 4.5 analyses as arrays (for notebooks) and figures.

attention.py   attention_rollout, rollout_matrix, mean_attention_distance, attention_pass, collect_attention
norms.py       token_norms, high_norm_share (registers paper, Fig. 3-4)
embeddings.py  embedding_filters_pca, position_embedding_similarity, grid_position_embeddings
plots.py       plot_filters, plot_position_similarity, plot_attention_distance, plot_rollout, plot_token_norms
predict.py     predict_files (`vitlab predict`), Prediction
report.py      analyze (`vitlab analyze`): every figure + JSON + index.md for one checkpoint
"""
from .attention import (
    AttentionPass,
    attention_pass,
    attention_rollout,
    collect_attention,
    mean_attention_distance,
    patch_centres,
    rollout_matrix,
)
from .embeddings import (
    cosine_similarity_grid,
    embedding_filters_pca,
    grid_position_embeddings,
    position_embedding_similarity,
)
from .norms import high_norm_share, token_norms
from .plots import plot_attention_distance, plot_filters, plot_position_similarity, plot_rollout, plot_token_norms
from .predict import Prediction, attention_png_paths, format_prediction, predict_files
from .report import analyze, similarity_by_distance

__all__ = [
    "AttentionPass",
    "Prediction",
    "analyze",
    "attention_pass",
    "attention_png_paths",
    "attention_rollout",
    "collect_attention",
    "cosine_similarity_grid",
    "embedding_filters_pca",
    "format_prediction",
    "grid_position_embeddings",
    "high_norm_share",
    "mean_attention_distance",
    "patch_centres",
    "plot_attention_distance",
    "plot_filters",
    "plot_position_similarity",
    "plot_rollout",
    "plot_token_norms",
    "position_embedding_similarity",
    "predict_files",
    "rollout_matrix",
    "similarity_by_distance",
    "token_norms",
]
