"""The catalog against its sources: the official README's recommended AugReg table (copied below as
published), index.csv's file-naming rule, the paper's release listing, timm's pretrained_cfg URLs for the
timm names given as aliases. A typo in a file name, size or accuracy fails here."""
import re

import pytest

import vitlab
from vitlab.models.registry import list_models
from vitlab.weights.catalog import catalog, get_pretrained, imagenet_classes, list_pretrained

# github.com/google-research/vision_transformer README.md, "We recommend using the following checkpoints"
README_TABLE = """
| L/16     | `gs://vit_models/augreg/L_16-i21k-300ep-lr_0.001-aug_strong1-wd_0.1-do_0.0-sd_0.0.npz`     | 1243 MiB | `gs://vit_models/augreg/L_16-i21k-300ep-lr_0.001-aug_strong1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_384.npz`     |        384 |      50 |            85.59% |
| B/16     | `gs://vit_models/augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz`     |  391 MiB | `gs://vit_models/augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz`     |        384 |     138 |            85.49% |
| S/16     | `gs://vit_models/augreg/S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0.npz`     |  115 MiB | `gs://vit_models/augreg/S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz`     |        384 |     300 |            83.73% |
| R50+L/32 | `gs://vit_models/augreg/R50_L_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1.npz` | 1337 MiB | `gs://vit_models/augreg/R50_L_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1--imagenet2012-steps_20k-lr_0.01-res_384.npz` |        384 |     327 |            85.99% |
| R26+S/32 | `gs://vit_models/augreg/R26_S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0.npz`  |  170 MiB | `gs://vit_models/augreg/R26_S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_384.npz`  |        384 |     560 |            83.85% |
| Ti/16    | `gs://vit_models/augreg/Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0.npz`      |   37 MiB | `gs://vit_models/augreg/Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz`      |        384 |     610 |            78.22% |
| B/32     | `gs://vit_models/augreg/B_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0.npz`      |  398 MiB | `gs://vit_models/augreg/B_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_384.npz`      |        384 |     955 |            83.59% |
| S/32     | `gs://vit_models/augreg/S_32-i21k-300ep-lr_0.001-aug_none-wd_0.1-do_0.0-sd_0.0.npz`        |  118 MiB | `gs://vit_models/augreg/S_32-i21k-300ep-lr_0.001-aug_none-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_384.npz`        |        384 |    2154 |            79.58% |
| R+Ti/16  | `gs://vit_models/augreg/R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0.npz`    |   40 MiB | `gs://vit_models/augreg/R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz`    |        384 |    2426 |            75.40% |
"""

# vit_jax.ipynb's `gsutil ls -l gs://vit_models/imagenet21k*` (size as listed, path)
RELEASE_LISTING = """
377.57 MiB  gs://vit_models/imagenet21k+imagenet2012/R50+ViT-B_16.npz
330.29 MiB  gs://vit_models/imagenet21k+imagenet2012/ViT-B_16-224.npz
 331.4 MiB  gs://vit_models/imagenet21k+imagenet2012/ViT-B_16.npz
336.89 MiB  gs://vit_models/imagenet21k+imagenet2012/ViT-B_32.npz
  1.13 GiB  gs://vit_models/imagenet21k+imagenet2012/ViT-L_16-224.npz
  1.14 GiB  gs://vit_models/imagenet21k+imagenet2012/ViT-L_16.npz
  1.14 GiB  gs://vit_models/imagenet21k+imagenet2012/ViT-L_32.npz
439.85 MiB  gs://vit_models/imagenet21k/R50+ViT-B_16.npz
393.69 MiB  gs://vit_models/imagenet21k/ViT-B_16.npz
400.01 MiB  gs://vit_models/imagenet21k/ViT-B_32.npz
  2.46 GiB  gs://vit_models/imagenet21k/ViT-H_14.npz
  1.22 GiB  gs://vit_models/imagenet21k/ViT-L_16.npz
  1.23 GiB  gs://vit_models/imagenet21k/ViT-L_32.npz
"""

# timm 1.0 pretrained_cfg URLs (vision_transformer.py, vision_transformer_hybrid.py) of the timm names the
# catalog gives as aliases of official files: an alias is only right if timm loads that very file.
TIMM_URLS = {
    "vit_tiny_patch16_224.augreg_in21k": "augreg/Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0.npz",
    "vit_small_patch16_224.augreg_in21k": "augreg/S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0.npz",
    "vit_base_patch16_224.augreg_in21k": "augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz",
    "vit_tiny_r_s16_p8_224.augreg_in21k": "augreg/R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0.npz",
    "vit_tiny_patch16_384.augreg_in21k_ft_in1k": "augreg/Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz",
    "vit_small_patch16_384.augreg_in21k_ft_in1k": "augreg/S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz",
    "vit_tiny_r_s16_p8_384.augreg_in21k_ft_in1k": "augreg/R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz",
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k": "augreg/Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_224.npz",
    "vit_small_patch16_224.augreg_in21k_ft_in1k": "augreg/S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_224.npz",
    "vit_base_patch16_224.augreg_in21k_ft_in1k": "augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_224.npz",
    "vit_small_patch32_224.augreg_in21k_ft_in1k": "augreg/S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_224.npz",
    "vit_base_patch32_224.augreg_in21k_ft_in1k": "augreg/B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_224.npz",
}

# index.csv's naming rule (vit_jax/checkpoint.py get_augreg_df; vit_jax_augreg.ipynb):
# {name}-{ds}-{epochs}ep-lr_{lr}-aug_{aug}-wd_{wd}-do_{do}-sd_{sd}[--{adapt_ds}-steps_{k}k-lr_{lr}-res_{res}].npz
AUGREG_RULE = re.compile(
    r"^augreg/(?P<name>Ti_16|S_16|S_32|B_16|B_32|B_8|L_16|R_Ti_16|R26_S_32|R50_L_32)-(?P<ds>i21k|i1k|i21k_30)-"
    r"(?P<epochs>300|30)ep-lr_0\.001-aug_(?P<aug>none|light[01]|medium[12]|strong[12])-wd_(?P<wd>0\.03|0\.1)-"
    r"do_(?P<do>0\.0|0\.1)-sd_(?P<sd>0\.0|0\.1)"
    r"(--(?P<adapt_ds>imagenet2012)-steps_20k-lr_(?P<lr>0\.001|0\.003|0\.01|0\.03)-res_(?P<res>224|384))?\.npz$")
AUGREG_ARCH = {"Ti_16": "vit_ti16", "S_16": "vit_s16", "S_32": "vit_s32", "B_16": "vit_b16", "B_32": "vit_b32",
               "L_16": "vit_l16", "R_Ti_16": "r_vit_ti16", "R26_S_32": "r26_vit_s32", "R50_L_32": "r50_vit_l32"}
ORIGINAL_ARCH = {"ViT-B_16": "vit_b16", "ViT-B_32": "vit_b32", "ViT-L_16": "vit_l16", "ViT-L_32": "vit_l32",
                 "ViT-H_14": "vit_h14", "R50+ViT-B_16": "r50_vit_b16"}


def _by_file():
    return {e.file: e for e in catalog() if e.source == "official"}


def test_every_row_of_the_readme_augreg_table_is_in_the_catalog():
    by_file = _by_file()
    rows = [r for r in README_TABLE.strip().splitlines()]
    assert len(rows) == 9
    for row in rows:
        _, model, pre, size, ft, res, _, acc, _ = (c.strip() for c in row.split("|"))
        pre, ft = pre.strip("`").removeprefix("gs://vit_models/"), ft.strip("`").removeprefix("gs://vit_models/")
        assert pre in by_file and ft in by_file, model
        e_pre, e_ft = by_file[pre], by_file[ft]
        assert e_pre.tag == "augreg_in21k" and e_ft.tag == "augreg_in21k_ft_in1k"
        assert e_pre.arch == e_ft.arch
        assert e_pre.size_mib == float(size.split()[0])
        assert e_ft.img_size == int(res) and e_ft.top1 == float(acc.rstrip("%"))
        assert e_ft.num_classes == 1000 and e_ft.class_names == "imagenet" and e_pre.num_classes == 21843


def test_augreg_file_names_follow_the_index_csv_rule():
    for e in catalog():
        if e.source == "official" and e.file.startswith("augreg/"):
            m = AUGREG_RULE.match(e.file)
            assert m, e.file
            assert AUGREG_ARCH[m["name"]] == e.arch, e.name
            assert m["ds"] == "i21k" and (m["res"] is None) == (e.finetune is None), e.name
            if m["res"]:
                assert int(m["res"]) == e.img_size, e.name


def test_the_papers_release_as_listed():
    by_file = _by_file()
    for line in RELEASE_LISTING.strip().splitlines():
        size, unit, url = line.split()
        path = url.removeprefix("gs://vit_models/")
        e = by_file[path]
        mib = float(size) * (1024 if unit == "GiB" else 1)
        assert e.size_mib == pytest.approx(mib, abs=0.01), path
        model = path.split("/")[1].removesuffix(".npz").removesuffix("-224")
        assert e.arch == ORIGINAL_ARCH[model]
        fine_tuned = path.startswith("imagenet21k+imagenet2012/")
        assert e.img_size == (224 if path.endswith("-224.npz") or not fine_tuned else 384)
        assert e.num_classes == (1000 if fine_tuned else 0)  # the i21k release zeroed its heads
    # the minimum: B/16, B/32, L/16, L/32, H/14 and R50+B/16 pretrained on ImageNet-21k
    assert {e.arch for e in catalog() if e.tag == "orig_in21k"} == set(ORIGINAL_ARCH.values())


def test_timm_aliases_name_the_file_timm_loads():
    for alias, path in TIMM_URLS.items():
        assert get_pretrained(alias).file == path, alias
    timm_aliases = {a for e in catalog() for a in e.aliases if a.startswith("vit_") and e.source == "official"
                    and "orig" not in a}
    assert timm_aliases == set(TIMM_URLS)


def test_entries_are_usable():
    models = set(list_models())
    for e in catalog():
        assert e.arch in models, e.name
        assert e.name.startswith(e.arch + "."), e.name
        assert e.source in ("official", "hf-hub", "vitlab")
        assert (e.hub_repo is not None) == (e.source == "hf-hub")
        assert e.facts and e.license
        assert (e.top1 is None) == (e.top1_source is None) or e.source == "vitlab", e.name
        fields = e.config_fields()
        vitlab.ViTConfig(num_classes=fields["num_classes"], class_names=fields["class_names"],
                         eval_resize=e.eval_resize, eval_crop_pct=e.eval_crop_pct,
                         eval_interpolation=e.eval_interpolation)
    google = sorted(a for e in catalog() for a in e.aliases if a.startswith("google/vit-"))
    assert len(google) == 11 and len(set(google)) == 11
    assert get_pretrained("google/vit-base-patch16-224").name == "vit_b16.orig_in21k_ft_in1k_224"
    assert list_pretrained("vit_ti16.*") == ["vit_ti16.augreg_in21k", "vit_ti16.augreg_in21k_ft_in1k",
                                            "vit_ti16.augreg_in21k_ft_in1k_224"]


def test_imagenet_class_names():
    names = imagenet_classes()
    assert len(names) == 1000
    assert names[0] == "tench, Tinca tinca" and names[281] == "tabby, tabby cat"
    assert names[999] == "toilet tissue, toilet paper, bathroom tissue"


def test_unknown_name_suggests_close_ones():
    with pytest.raises(vitlab.errors.ConfigError, match="did you mean vit_b16.augreg_in21k"):
        get_pretrained("vit_b16.augreg_in21")
