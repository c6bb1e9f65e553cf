"""The ``vitlab`` command: argument parsing only; each sub-command calls a library function."""
from __future__ import annotations

import argparse
import os
import select
import sys

from .errors import VitlabError


def _models(args: argparse.Namespace) -> int:
    from .models.registry import describe_models

    print(describe_models(args.pattern))
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model names with their parameter counts")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'vit_b*'")
    p.set_defaults(func=_models)


def _pretrained(args: argparse.Namespace) -> int:
    from .weights.hub import describe_pretrained

    print(describe_pretrained(args.pattern))
    return 0


def _add_pretrained(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrained", help="list the pretrained weights vitlab knows by name (paper, AugReg, "
                                          "DINOv2/SigLIP/CLIP, hub, shipped): architecture, data, resolution, "
                                          "classes, size, accuracy, license")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'vit_b16.*'")
    p.set_defaults(func=_pretrained)


def _download(args: argparse.Namespace) -> int:
    from .weights.hub import fetch

    for name in args.names:
        print(f"{name}: {fetch(name)}")
    return 0


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch pretrained weights ahead of time into the cache (resumable, verified)")
    p.add_argument("names", nargs="+", metavar="NAME", help="catalog names or aliases (`vitlab pretrained`), or "
                                                              "hf-hub:ORG/NAME")
    p.set_defaults(func=_download)


def _checkpoint_overrides(args: argparse.Namespace) -> dict:
    """ViTConfig fields a checkpoint's shapes cannot tell (only those given on the command line)."""
    return {k: v for k, v in (("num_heads", args.num_heads), ("act", args.act)) if v is not None}


def _add_checkpoint_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-heads", type=int, help="attention heads, for timm files whose width is not a registered variant")
    p.add_argument("--act", choices=("gelu", "gelu_tanh", "relu"), help="override the activation the format implies")


def _add_checkpoint_choice(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="best|last|PATH",
                   help="with a training run directory: best (RUN/checkpoints/best.pt), last (the latest step "
                        "checkpoint) or a checkpoint file; keeps the run's classes, normalisation and activation "
                        "(default: RUN/model, the finished run's weights)")


def _load(args: argparse.Namespace):
    """The command's model, in eval mode on ``--device``: the one checkpoint -> model path (with
    ``--backend`` other than torch, the checkpoint's ONNX export run by that engine, as a module)."""
    from .utils.device import pick_device
    from .weights import load_model

    if getattr(args, "backend", "torch") != "torch":
        from .deploy import BackendModel, open_backend

        return BackendModel(open_backend(args.ckpt, args.backend, checkpoint=args.checkpoint))
    return load_model(args.ckpt, args.checkpoint).to(pick_device(args.device))


def _convert(args: argparse.Namespace) -> int:
    from .weights import convert

    out = convert(args.src, args.dst, args.to, args.checkpoint, **_checkpoint_overrides(args))
    print(f"wrote {out} ({args.to})")
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a checkpoint (official .npz, timm, Hugging Face, vitlab) to another layout")
    p.add_argument("src", help="checkpoint file or directory in any supported format, or a pretrained NAME / hf-hub:ORG/NAME")
    p.add_argument("dst", help="output: a directory for vitlab/hf, a file for timm (.safetensors) and npz")
    p.add_argument("--to", required=True, choices=("vitlab", "timm", "hf", "npz"), help="output layout")
    _add_checkpoint_choice(p)
    _add_checkpoint_options(p)
    p.set_defaults(func=_convert)


def _info(args: argparse.Namespace) -> int:
    from .weights import describe_checkpoint

    print(describe_checkpoint(args.ckpt, args.checkpoint, **_checkpoint_overrides(args)))
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a checkpoint's format, architecture, parameter count, classes and keys")
    p.add_argument("ckpt", help="checkpoint file or directory, or a pretrained NAME / hf-hub:ORG/NAME")
    _add_checkpoint_choice(p)
    _add_checkpoint_options(p)
    p.set_defaults(func=_info)


def _predict(args: argparse.Namespace) -> int:
    from .analysis import format_prediction, predict_files
    from .analysis.predict import write_predictions
    from .data.sources import find_images

    model = _load(args)  # a checkpoint problem stops here, before any file is looked at
    files, missing = find_images(args.images)
    for item, why in missing:
        print(f"{item}: error: {why}", file=sys.stderr)
    results = predict_files(model, files, topk=args.topk, attention=args.attention, batch_size=args.batch_size,
                            progress=True) if files else []
    bad = [r for r in results if r.error]
    if args.out:
        for r in bad:
            print(format_prediction(r), file=sys.stderr)
        out = write_predictions(results, args.out)
        print(f"wrote {out}: {len(results) - len(bad)} image(s) classified"
              + (f", {len(bad)} unusable (listed above, with their error in the file)" if bad else ""))
    else:
        for r in results:
            print(format_prediction(r), file=sys.stderr if r.error else sys.stdout)
    return 1 if bad or missing else 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top-k classes for image files, folders and globs, optionally with "
                                       "attention-rollout overlays; --out preds.csv|.jsonl for many files")
    p.add_argument("ckpt", help="checkpoint: vitlab or training-run directory, HF directory, timm or official file, or a "
                                "pretrained NAME (`vitlab pretrained`) or hf-hub:ORG/NAME")
    p.add_argument("images", nargs="+", help="image files of any size and mode (resized as the checkpoint expects), "
                                             "folders (searched recursively) or quoted globs ('photos/**/*.jpg')")
    p.add_argument("--topk", type=int, default=5, help="classes to show per image (default 5)")
    p.add_argument("--out", metavar="PREDS.csv|.jsonl",
                   help="write path, error and top-k classes with probabilities per image to this file")
    p.add_argument("--batch-size", type=int, default=32, help="images decoded and classified at a time (default 32)")
    p.add_argument("--attention", metavar="OUT.png",
                   help="write the image with its rollout map overlaid; for several images OUT_<k>_<stem>.png each")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    _add_checkpoint_choice(p)
    _add_backend_option(p)
    p.set_defaults(func=_predict)


def _analyze(args: argparse.Namespace) -> int:
    from .analysis import analyze

    analyze(_load(args), args.data, args.out, num_images=args.num_images, split=args.split, data_dir=args.data_dir,
            num_rollout=args.num_rollout, batch_size=args.batch_size)
    print(f"wrote {args.out}/index.md")
    return 0


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="the paper's figures for a checkpoint: filters, position similarity, "
                                       "attention distance, rollout (PNG + JSON + index.md)")
    p.add_argument("ckpt", help="checkpoint: vitlab or training-run directory, HF directory, timm or official file, or a "
                                "pretrained NAME (`vitlab pretrained`) or hf-hub:ORG/NAME")
    p.add_argument("--data", required=True, help="dataset name (fashion_mnist, cifar10, ...) or path (class folders, "
                                                  ".npz, tar shards, a Hugging Face dataset)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num-images", type=int, default=64, help="images sampled for attention distance (default 64)")
    p.add_argument("--num-rollout", type=int, default=8, help="of those, how many get rollout maps (default 8)")
    p.add_argument("--split", default="test", help="dataset split (default test)")
    p.add_argument("--data-dir", help="where named datasets live (default: $VITLAB_DATA, system paths)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    _add_checkpoint_choice(p)
    p.set_defaults(func=_analyze)


def _data(args: argparse.Namespace) -> int:
    from .data import describe_dataset, open_dataset

    if args.spec[0] == "pack":
        return _pack(args)
    if len(args.spec) != 1:
        raise ValueError(f"vitlab data takes one SPEC (or: vitlab data pack SRC OUT), got {' '.join(args.spec)}")
    spec = args.spec[0]
    ds = open_dataset(spec, args.split or "train", args.data_dir, size=args.size, on_error=args.on_error,
                      cache=args.cache, report=False)  # the report below lists the unusable files
    print(describe_dataset(ds, f"{spec} ({args.split or 'train'})"))
    return 0


def _pack(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .data import DatasetSpec, open_dataset
    from .data.pack import pack, parse_shard_size

    if len(args.spec) != 3:
        raise ValueError("usage: vitlab data pack SRC OUT --shard-size N (samples a shard) or SIZE (e.g. 500MB)")
    if not args.shard_size:
        raise ValueError("vitlab data pack needs --shard-size: samples a shard (e.g. 1000) or bytes (e.g. 500MB)")
    src, out = DatasetSpec.parse(args.spec[1]), Path(args.spec[2])
    size = parse_shard_size(args.shard_size)
    both = args.split is None and src.has_test_split()  # a split source keeps its splits: OUT/train, OUT/test
    for split in ("train", "test") if both else (args.split or "train",):
        ds = open_dataset(src, split, args.data_dir, on_error=args.on_error, cache=args.cache, in_memory=False)
        dest = out / split if both else out
        index = pack(ds, dest, size, seed=None if args.no_shuffle else args.seed, described_as=f"{src} ({split})")
        print(f"{src} ({split}): {index['samples']} samples in {len(index['shards'])} shard(s) in {dest} "
              f"(index {dest}/dataset.json)" + (f"; {len(index['skipped'])} unreadable left out, listed there"
                                                 if index["skipped"] else ""))
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="report a dataset's size, classes and unusable files; `data pack SRC OUT`: "
                                    "write it as WebDataset tar shards")
    p.add_argument("spec", nargs="+", metavar="SPEC | pack SRC OUT",
                   help="fashion_mnist, mnist, mnist5k, cifar10, cifar100, digits, or a path (class folders, .npz, a "
                        "folder with IDX or CIFAR .bin files, tar shards, a Hugging Face dataset); or `pack SRC OUT` "
                        "to write SRC as tar shards into OUT (both splits, as OUT/train and OUT/test, when SRC has "
                        "a test split and --split is not given)")
    p.add_argument("--split", choices=("train", "test"), help="the split to read (default train; pack: both)")
    p.add_argument("--data-dir", help="where named datasets live (else $VITLAB_DATA, then system paths)")
    p.add_argument("--size", type=int, help="image folders: resize every image to SIZE x SIZE (default: first image's)")
    p.add_argument("--on-error", default="skip", choices=("skip", "raise"), help="image folders, shards: bad files")
    p.add_argument("--cache", help="image folders: .npz cache of the decoded images, reused while files are unchanged "
                                   "('auto': one per folder under ~/.cache/vitlab); shards: where the index is kept")
    p.add_argument("--shard-size", help="pack: samples a shard (e.g. 1000), or bytes a shard at most (e.g. 500MB)")
    p.add_argument("--seed", type=int, default=0, help="pack: seed of the shuffled order samples are written in")
    p.add_argument("--no-shuffle", action="store_true", help="pack: keep the source's order (shards then hold "
                                                             "one class after another)")
    p.set_defaults(func=_data)


def _train(args: argparse.Namespace) -> int:
    import signal as _signal

    from .train import NonFiniteLossError, load_config, train

    overrides = list(args.overrides) + ([f"data.data_dir={args.data_dir}"] if args.data_dir else [])
    cfg = load_config(args.config, overrides)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    if not args.out:
        raise ValueError("--out RUN_DIR is required to train (only --print-config runs without it)")
    resume = False if args.no_resume else args.resume
    try:
        result = train(cfg, args.out, resume=resume, progress=not args.no_progress)
    except NonFiniteLossError as e:
        print(f"vitlab train: stopped: {e}", file=sys.stderr)
        return 3
    if result.interrupted is not None:
        name = _signal.Signals(result.interrupted).name
        print(f"vitlab train: {name} at step {result.step}/{result.total_steps}; saved {result.checkpoint}. "
              f"Run the same command again to resume.", file=sys.stderr)
        return 128 + int(result.interrupted)
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or fine-tune from a YAML recipe (resumes RUN/checkpoints automatically)",
                       description="Recipes are in configs/. Any field can be overridden: section.field=value, "
                                   "e.g. optim.lr=3e-4 data.batch_size=128 model.depth=4. Multi-process: "
                                   "torchrun --nproc_per_node N -m vitlab train ...")
    p.add_argument("--config", help="YAML recipe (default: built-in defaults)")
    p.add_argument("--out", help="run directory (checkpoints, metrics, plots, model/, split.json); required to train")
    p.add_argument("overrides", nargs="*", metavar="section.field=value", help="config overrides")
    p.add_argument("--data-dir", metavar="DIR", help="where named datasets live (same as data.data_dir=DIR; "
                                                     "else $VITLAB_DATA, then system paths)")
    p.add_argument("--print-config", action="store_true",
                   help="print the full recipe (every key, defaults filled in, overrides applied) and exit")
    p.add_argument("--resume", metavar="CKPT", help="resume from this checkpoint (default: the latest in OUT/checkpoints)")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue a run directory that has checkpoints")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar: a line every train.log_every_steps instead (step, loss, lr, img/s, ETA)")
    p.set_defaults(func=_train)


def _add_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None,
                   help="processes decoding images read from disk (image folders too large for memory; default: "
                        "the cores, at most 8; 0: in this process)")


def _eval(args: argparse.Namespace) -> int:
    from .evaluate.metrics import evaluate_checkpoint, format_summary

    s = evaluate_checkpoint(args.ckpt, args.data, args.split, args.data_dir, args.batch_size, args.device, args.checkpoint,
                            args.backend, args.workers)
    which = f" ({args.checkpoint} checkpoint)" if args.checkpoint else ""
    print(format_summary(s, f"{args.ckpt}{which} on {s['data']}"))
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="top-1, top-5 and per-class accuracy of a checkpoint on a dataset")
    p.add_argument("ckpt", help="run directory, save_pretrained directory, any checkpoint vitlab reads, or a "
                                "pretrained NAME (`vitlab pretrained`) or hf-hub:ORG/NAME")
    p.add_argument("--data", help="dataset name (fashion_mnist, cifar10, digits, ...) or path; default for a run "
                                  "directory: its own data, and its held-out test images when it made them (split.json)")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--data-dir", help="where named datasets live (default: $VITLAB_DATA, system paths)")
    p.add_argument("--batch-size", type=int, default=1024)
    _add_workers(p)
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    _add_checkpoint_choice(p)
    _add_backend_option(p)
    p.set_defaults(func=_eval)


def _add_backend_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "openvino"),
                   help="inference engine (default torch); onnxruntime/openvino run the ONNX export of the checkpoint "
                        "(or an .onnx file from `vitlab export`) on the CPU")


def _export(args: argparse.Namespace) -> int:
    from .deploy import export_onnx

    print(export_onnx(args.ckpt, args.out, check=not args.no_check, checkpoint=args.checkpoint))
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint for deployment (ONNX, with classes and normalisation as "
                                      "metadata), checked against torch")
    p.add_argument("ckpt", help="run directory, save_pretrained directory, any checkpoint vitlab reads, or a "
                                "pretrained NAME (`vitlab pretrained`) or hf-hub:ORG/NAME")
    p.add_argument("--to", required=True, choices=("onnx",), help="output format")
    p.add_argument("out", help="output file, e.g. model.onnx")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with torch (ONNX Runtime)")
    _add_checkpoint_choice(p)
    p.set_defaults(func=_export)


def _fewshot(args: argparse.Namespace) -> int:
    from .evaluate.fewshot import fewshot_checkpoint, format_fewshot

    report = fewshot_checkpoint(args.ckpt, args.data, args.split_train, args.split_test, tuple(args.shots),
                                tuple(args.seeds), args.max_test, args.data_dir, args.batch_size, args.device,
                                out=args.out, checkpoint=args.checkpoint, workers=args.workers)
    print(format_fewshot(report))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _add_fewshot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fewshot", help="few-shot linear probe of a checkpoint's frozen features (the paper's ridge "
                                       "regression, k shots per class, several seeds)")
    p.add_argument("ckpt", help="run directory, save_pretrained directory, any checkpoint vitlab reads, or a "
                                "pretrained NAME (`vitlab pretrained`) or hf-hub:ORG/NAME")
    p.add_argument("--data", required=True, help="dataset name (fashion_mnist, cifar10, digits, ...) or path (class "
                                                  "folders, .npz, tar shards, a Hugging Face dataset)")
    p.add_argument("--split-train", default="train", help="split the shots are drawn from (default train)")
    p.add_argument("--split-test", default="test", help="split the probe is scored on (default test)")
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10, 25], help="examples per class (default 1 5 10 25)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="random draws of the shots (default 0 1 2)")
    p.add_argument("--max-test", type=int, help="score on a fixed random subset of this many test images")
    p.add_argument("--data-dir", help="where named datasets live (default: $VITLAB_DATA, system paths)")
    p.add_argument("--batch-size", type=int, default=256)
    _add_workers(p)
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--out", help="also write the results as JSON to this file")
    _add_checkpoint_choice(p)
    p.set_defaults(func=_fewshot)


def _serve(args: argparse.Namespace) -> int:
    from .serve import serve

    serve(args.ckpt, args.host, args.port, args.checkpoint, args.device)
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="a local web page to explore a model: predictions, attention per layer and "
                                     "head, rollout, model card, analysis figures (needs the 'serve' extra)")
    p.add_argument("ckpt", metavar="RUN_OR_CHECKPOINT", help="training-run directory, any ViT checkpoint vitlab reads, or a "
                                                                  "pretrained NAME (e.g. vitlab/fmnist)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--checkpoint", metavar="best|last|PATH",
                   help="serve a training checkpoint of the run (RUN/checkpoints) instead of its final model/")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.set_defaults(func=_serve)


def _experiment(args: argparse.Namespace) -> int:
    from . import experiments as ex

    if args.action == "list":
        print(ex.list_experiments())
        return 0
    if args.target is None:
        raise ValueError(f"experiment {args.action} needs " + ("NAME (see `vitlab experiment list`)" if args.action == "run"
                                                              else "DIR (an experiment's --out directory)"))
    if args.action == "report":
        result = ex.render_report(args.target)
        print(f"{result['experiment']}: {result['verdict']}; wrote {args.target}/summary.md")
        return 0
    if args.out is None:
        raise ValueError("experiment run needs --out DIR (where the arms' run directories and the results go)")
    try:
        result = ex.run_experiment(args.target, args.out, args.budget, args.seeds, args.device or "auto",
                                   progress=not args.no_progress)
    except ex.ExperimentInterrupted as e:
        print(f"vitlab experiment: {e}; its checkpoint is saved. Run the same command again to resume "
              "(finished arms are skipped).", file=sys.stderr)
        return 128 + e.signum
    print(f"{result['experiment']}: {result['verdict']}; wrote {args.out}/result.json, summary.md, plot.png")
    return 0


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="the paper's findings as experiments: list, run NAME --out DIR, report DIR",
                       description="list: names, claims, cost per budget. run NAME --out DIR: train every arm "
                                   "(resumable: finished arms are skipped), then write DIR/result.json, summary.md, "
                                   "plot.png with the verdict. report DIR: re-render from DIR/result.json.")
    p.add_argument("action", choices=("list", "run", "report"))
    p.add_argument("target", nargs="?", help="run: the experiment name; report: the experiment's directory")
    p.add_argument("--out", help="run: the experiment's directory")
    p.add_argument("--budget", default="quick", choices=("smoke", "quick", "full"),
                   help="smoke: seconds (tests); quick: <= ~15 min on 2 idle cores; full: <= ~60 min")
    p.add_argument("--seeds", type=int, help="seeds per arm (default: the experiment's)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_experiment)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_models, _add_pretrained, _add_download, _add_convert, _add_info, _add_predict, _add_analyze, _add_data, _add_train, _add_eval,
                _add_fewshot, _add_serve, _add_experiment, _add_export):
        add(sub)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a command line; `train` overrides may stand before or after options."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse leaves overrides that stand after an option: `--out X a=b --no-progress c=d`
        if getattr(args, "overrides", None) is not None and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides += extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


# What a user can fix from the message alone: vitlab's own errors, and the ValueError / FileNotFoundError
# raised on purpose for bad input. Anything else (TypeError, KeyError, ...) is a bug: it keeps its traceback.
USER_ERRORS = (VitlabError, ValueError, FileNotFoundError)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if isinstance(getattr(args, "ckpt", None), str):  # vitlab/fmnist: the run directory in the package
            from .weights.hub import shipped_path

            args.ckpt = shipped_path(args.ckpt)
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        print(f"vitlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        if not _reader_left():  # another pipe (a worker's, say): not the user's doing
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit fails no more
        return SIGPIPE_EXIT


SIGPIPE_EXIT = 128 + 13  # what a shell reports for a writer whose reader left (SIGPIPE), as `cat` ends


def _reader_left() -> bool:
    """Whether stdout's reader has gone (`vitlab models | head -2`): its pipe then polls as an error."""
    poll = select.poll()
    poll.register(sys.stdout.fileno(), select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
