#!/usr/bin/env python3
"""Mutation testing of the modules whose correctness is the product, with mutmut; survivors per module.

A mutant is the source with one small change (a constant, an operator, an argument dropped). A test
suite that stays green under a mutant has not pinned that behaviour down: each survivor is either a
missing test or an equivalent change worth a comment. Too slow for CI; run it before and after adding
tests to the modules you touch (docs/mutation.md).

    python scripts/mutate.py pos_embed fewshot masked          # named modules, their fast tests
    python scripts/mutate.py --tests-rev main pos_embed        # the same source against main's tests
    python scripts/mutate.py --tests "tests/models -k resample" src/vitlab/models/vit.py

The work happens in a scratch copy (.mutation/<name>/, git-ignored): the working tree is never edited.
Results: a per-module table on stdout and .mutation/<name>/report.json with every survivor's name
(``cd .mutation/<name> && mutmut show NAME`` prints its diff).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import io
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Module -> the fast tests that are meant to pin it down (globs; paths missing at --tests-rev are dropped).
MODULES: dict[str, tuple[str, list[str]]] = {
    "vit": ("src/vitlab/models/vit.py", ["tests/models/test_vit_model.py", "tests/models/test_resample_paths.py"]),
    "pos_embed": ("src/vitlab/models/pos_embed.py", ["tests/models/test_pos_embed_resample.py",
                                                     "tests/models/test_resample_paths.py"]),
    "masked": ("src/vitlab/models/masked.py", ["tests/models/test_masked_*.py"]),
    "fewshot": ("src/vitlab/evaluate/fewshot.py", ["tests/evaluate/test_fewshot*.py"]),
    "official": ("src/vitlab/weights/official.py", ["tests/weights/test_official_npz.py"]),
    "hf": ("src/vitlab/weights/hf.py", ["tests/weights/test_hf_*.py"]),
    "timm": ("src/vitlab/weights/timm.py", ["tests/weights/test_timm_vitlab_roundtrip.py"]),
    "load": ("src/vitlab/weights/load.py", ["tests/weights", "tests/models/test_resample_paths.py"]),
    "distributed": ("src/vitlab/train/distributed.py", ["tests/train"]),  # slow: real training runs
    "checkpoint": ("src/vitlab/train/checkpoint.py", ["tests/train/test_checkpoint_files.py", "tests/test_no_code_from_files.py"]),
}
STATUSES = ("killed", "survived", "no tests", "timeout", "suspicious", "segfault", "skipped", "not checked")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("modules", nargs="+", help=f"short names ({', '.join(MODULES)}) or src/ paths")
    p.add_argument("--tests", help="pytest arguments selecting the tests (default: each module's own, see MODULES)")
    p.add_argument("--tests-rev", help="take tests/ from this git revision (e.g. main) instead of the working tree")
    p.add_argument("--name", help="scratch directory name under .mutation/ (default: from the modules and rev)")
    p.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    return p.parse_args()


def resolve(mods: list[str]) -> tuple[list[str], list[str]]:
    paths, tests = [], []
    for m in mods:
        if m in MODULES:
            path, t = MODULES[m]
        elif (ROOT / m).is_file():
            path, t = m, []
        else:
            sys.exit(f"unknown module {m!r}: use one of {sorted(MODULES)} or a path under src/")
        paths.append(path)
        tests += [x for x in t if x not in tests]
    return paths, tests


def copy_tree(scratch: Path, rev: str | None) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src", scratch / "src", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", scratch / "pyproject.toml")
    if rev is None:
        shutil.copytree(ROOT / "tests", scratch / "tests", ignore=ignore)
        return
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "tests"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(scratch, filter="data")


def existing(scratch: Path, selection: list[str]) -> list[str]:
    """Test paths/globs that exist in the scratch copy (a file added after --tests-rev is left out)."""
    return [s for s in selection if s.startswith("-") or list(scratch.glob(s.split("::")[0]))]


def main() -> int:
    args = parse()
    paths, default_tests = resolve(args.modules)
    name = args.name or "-".join(Path(p).stem for p in paths) + (f"@{args.tests_rev}" if args.tests_rev else "")
    scratch = ROOT / ".mutation" / re.sub(r"[^\w@.-]", "_", name)
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    copy_tree(scratch, args.tests_rev)
    selection = args.tests.split() if args.tests else existing(scratch, default_tests)
    globbed = [str(p.relative_to(scratch)) for s in selection if not s.startswith("-") for p in sorted(scratch.glob(s))]
    selection = [s for s in selection if s.startswith("-")] + globbed
    if not globbed:
        sys.exit(f"no tests selected for {paths}")
    # mutmut reads [mutmut] from setup.cfg when pyproject.toml has no [tool.mutmut].
    cfg = ["[mutmut]", "source_paths = src", "only_mutate =", *[f"    {p}" for p in paths],
           "pytest_add_cli_args_test_selection =", *[f"    {s}" for s in selection]]
    (scratch / "setup.cfg").write_text("\n".join(cfg) + "\n")
    print(f"mutating {', '.join(paths)} in {scratch}\ntests: {' '.join(selection)}", flush=True)
    # mutmut puts mutants/src first itself. It forks a worker per mutant: one thread per process, or a fork
    # taken while torch's OpenMP pool is busy can deadlock (a mutant stuck at 0% CPU).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)],
                         cwd=scratch, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if run.returncode:
        print(run.stderr[-3000:], file=sys.stderr)
        return run.returncode
    res = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=scratch, env=env,
                         capture_output=True, text=True, check=True).stdout
    report: dict[str, dict] = {}
    for p in paths:
        module = p[len("src/"):-len(".py")].replace("/", ".")
        rows = [line.strip().rsplit(": ", 1) for line in res.splitlines() if line.strip().startswith(module + ".")]
        counts = {s: sum(1 for _, st in rows if st == s) for s in STATUSES}
        report[module] = {**{k: v for k, v in counts.items() if v}, "survivors": [n for n, st in rows if st == "survived"]}
    (scratch / "report.json").write_text(json.dumps({"tests": selection, "tests_rev": args.tests_rev, "modules": report},
                                                    indent=1) + "\n")
    print(f"\n{'module':<28} {'mutants':>7} {'killed':>7} {'survived':>8} {'no tests':>8} {'other':>6} {'kill rate':>9}")
    for module, r in report.items():
        n = sum(v for k, v in r.items() if k != "survivors")
        tested = r.get("killed", 0) + r.get("survived", 0)
        other = n - tested - r.get("no tests", 0)
        rate = f"{100 * r.get('killed', 0) / tested:.1f}%" if tested else "-"
        print(f"{module:<28} {n:>7} {r.get('killed', 0):>7} {r.get('survived', 0):>8} {r.get('no tests', 0):>8} {other:>6} {rate:>9}")
    print(f"\nsurvivors: {scratch / 'report.json'} (show one: cd {scratch} && python -m mutmut show NAME)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
