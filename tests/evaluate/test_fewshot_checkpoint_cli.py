"""`vitlab fewshot` / fewshot_checkpoint: the ridge probe on a saved model's frozen features."""
import json

import numpy as np
import torch

import vitlab
from vitlab import cli
from vitlab.data import open_dataset
from vitlab.evaluate.fewshot import fewshot_draws, fewshot_eval


def _saved_model(path):
    torch.manual_seed(0)
    m = vitlab.create_model("vit_mnist", img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=1, num_heads=2,
                            mlp_dim=64, num_classes=10, mean=(0.3,), std=(0.4,))
    m.save_pretrained(path)
    return m.eval()


def test_fewshot_cli_matches_probe_on_all_features(tmp_path, capsys):
    model = _saved_model(tmp_path / "m")
    out = tmp_path / "fs" / "fewshot.json"
    argv = ["fewshot", str(tmp_path / "m"), "--data", "digits", "--shots", "1", "5", "--seeds", "0", "1",
            "--max-test", "150", "--out", str(out)]
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert [r["shots"] for r in report["results"]] == [1, 5] and report["test_images"] == 150
    assert report["feature_dim"] == 32 and all(len(r["per_seed"]) == 2 for r in report["results"])

    # Only the images the draws name were embedded.
    train, test = open_dataset("digits", "train"), open_dataset("digits", "test")
    draws = fewshot_draws(train.labels.numpy(), (1, 5), (0, 1))
    assert report["train_images_embedded"] == len(np.unique(np.concatenate(list(draws.values()))))

    # Reference: every image embedded with the checkpoint's own normalisation, then the probe.
    def feats(images):
        with torch.no_grad():
            x = (images.float() / 255 - 0.3) / 0.4
            return model.forward_head(model.forward_features(x), pre_logits=True).double().numpy()

    test_idx = np.sort(np.random.default_rng(0).permutation(len(test))[:150])
    ref = fewshot_eval(feats(train.images), train.labels.numpy(), feats(test.images[test_idx]),
                       test.labels.numpy()[test_idx], shots=(1, 5), seeds=(0, 1))
    for r, want in zip(report["results"], ref):
        np.testing.assert_allclose(r["per_seed"], [100 * a for a in want.accuracies], atol=1e-4)  # 7 significant digits
        assert f"{r['mean']:7.2f}% ± {r['std']:5.2f}" in table
    assert report["results"][1]["mean"] > 15  # even random features of 5 shots beat chance (10%)


def test_fewshot_cli_errors(tmp_path, capsys):
    _saved_model(tmp_path / "m")
    assert cli.main(["fewshot", str(tmp_path / "m"), "--data", "digits", "--shots", "500"]) == 2
    assert "fewer than 500 shots" in capsys.readouterr().err
    assert cli.main(["fewshot", str(tmp_path / "nope"), "--data", "digits"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_named_set_not_installed_says_how_to_get_it_and_where_to_say_it_is(tmp_path, capsys, monkeypatch):
    """`vitlab fewshot RUN --data mnist` where no MNIST files are: not 'looked in: (nowhere)'."""
    monkeypatch.delenv("VITLAB_DATA", raising=False)
    _saved_model(tmp_path / "m")
    assert cli.main(["fewshot", str(tmp_path / "m"), "--data", "mnist"]) == 2
    err = capsys.readouterr().err
    assert "mnist (train) not found; no folder to look in was given" in err and "nowhere" not in err
    assert "train-images-idx3-ubyte.gz" in err and "--data-dir DIR" in err and "data.data_dir=DIR" in err
    assert "VITLAB_DATA" in err and "pip install 'vitlab[datasets]'" in err and "'mnist5k'" in err
