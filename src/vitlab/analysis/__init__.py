"""Looking inside a ViT: the paper's section 4.5 analyses as arrays (for notebooks) and figures.

attention.py   attention_rollout, rollout_matrix, mean_attention_distance, collect_attention
embeddings.py  embedding_filters_pca, position_embedding_similarity, grid_position_embeddings
plots.py       plot_filters, plot_position_similarity, plot_attention_distance, plot_rollout
predict.py     predict_files (`vitlab predict`), Prediction
report.py      analyze (`vitlab analyze`): every figure + JSON + index.md for one checkpoint
"""
from .attention import attention_rollout, collect_attention, mean_attention_distance, patch_centres, rollout_matrix
from .embeddings import (
    cosine_similarity_grid,
    embedding_filters_pca,
    grid_position_embeddings,
    position_embedding_similarity,
)
from .plots import plot_attention_distance, plot_filters, plot_position_similarity, plot_rollout
from .predict import Prediction, attention_png_paths, format_prediction, predict_files
from .report import analyze, similarity_by_distance

__all__ = [
    "Prediction",
    "analyze",
    "attention_png_paths",
    "attention_rollout",
    "collect_attention",
    "cosine_similarity_grid",
    "embedding_filters_pca",
    "format_prediction",
    "grid_position_embeddings",
    "mean_attention_distance",
    "patch_centres",
    "plot_attention_distance",
    "plot_filters",
    "plot_position_similarity",
    "plot_rollout",
    "position_embedding_similarity",
    "predict_files",
    "rollout_matrix",
    "similarity_by_distance",
]
