"""docs/reference/*.md are generated from the code (registry, argument parser, recipe dataclasses);
the committed copies must be what the code generates now."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_reference_pages_are_current():
    gen = _gen_docs()
    stale = gen.stale()
    assert not stale, f"docs/reference/{', '.join(stale)} out of date with the code; run: {gen.COMMAND}"


def test_reference_pages_cover_the_code():
    gen = _gen_docs()
    from vitlab import list_models

    models = gen.models_md()
    assert all(f"| `{n}` |" in models for n in list_models())
    cli = gen.cli_md()
    assert "--num-rollout" in cli and "--split-train" in cli and "`--size`" in cli and "--print-config" in cli
    recipe = gen.recipe_md()
    for key in ("data.train_limit", "optim.momentum", "schedule.min_lr_ratio", "data.test_fraction", "model.norm_eps",
                "`mnist`", "`cifar10`"):
        assert key in recipe, key
