"""The ``vitlab`` command: argument parsing only; each sub-command calls a library function."""
from __future__ import annotations

import argparse
import sys


def _models(args: argparse.Namespace) -> int:
    from .models.registry import describe_models

    print(describe_models(args.pattern))
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model names with their parameter counts")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'vit_b*'")
    p.set_defaults(func=_models)


def _checkpoint_overrides(args: argparse.Namespace) -> dict:
    """ViTConfig fields a checkpoint's shapes cannot tell (only those given on the command line)."""
    return {k: v for k, v in (("num_heads", args.num_heads), ("act", args.act)) if v is not None}


def _add_checkpoint_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-heads", type=int, help="attention heads, for timm files whose width is not a registered variant")
    p.add_argument("--act", choices=("gelu", "gelu_tanh", "relu"), help="override the activation the format implies")


def _convert(args: argparse.Namespace) -> int:
    from .weights import convert

    out = convert(args.src, args.dst, args.to, **_checkpoint_overrides(args))
    print(f"wrote {out} ({args.to})")
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a checkpoint (official .npz, timm, Hugging Face, vitlab) to another layout")
    p.add_argument("src", help="checkpoint file or directory in any supported format")
    p.add_argument("dst", help="output: a directory for vitlab/hf, a file for timm (.safetensors) and npz")
    p.add_argument("--to", required=True, choices=("vitlab", "timm", "hf", "npz"), help="output layout")
    _add_checkpoint_options(p)
    p.set_defaults(func=_convert)


def _info(args: argparse.Namespace) -> int:
    from .weights import describe_checkpoint

    print(describe_checkpoint(args.ckpt, **_checkpoint_overrides(args)))
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a checkpoint's format, architecture, parameter count, classes and keys")
    p.add_argument("ckpt", help="checkpoint file or directory")
    _add_checkpoint_options(p)
    p.set_defaults(func=_info)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_models, _add_convert, _add_info):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, TypeError) as e:  # user errors: message, not traceback
        print(f"vitlab {args.command}: error: {e}", file=sys.stderr)
        return 2
