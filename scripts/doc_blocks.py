"""The command blocks of the README and the guides, and how the tests run them, so the docs cannot drift.

Every ```bash / ```python block in README.md and docs/guides/*.md carries a marker on the line before it:

    <!-- run -->                          run as written (tests/test_docs_blocks.py)
    <!-- run: small KEY=VALUE ... -->     run with these recipe overrides appended to every `vitlab train`
    <!-- run by tests/FILE.py: WHY -->    that test runs it (e.g. at a smaller budget; tests/test_docs_blocks.py:
                                          the same block, run where another page has it)
    <!-- not run: REASON -->              not runnable here (a GPU, the network, a server that waits): why

A ```text block after a command block, marked `<!-- output: generated ... -->`, is what the command prints:
`python3 scripts/gen_docs.py` writes it, and the test fails when the code prints something else now (numbers
aside). One marked `<!-- output: recorded ... -->` comes from a full-size run; the test checks that every
kind of line the code prints now is in it, and every line in it is still printed (except one just before `...`).

Blocks of a page run in order in one sandbox directory: `configs/` of this checkout, a `scripts/` whose
`setup.sh` does nothing (the tests run inside the set-up environment), `.venv/bin/{python,python3,vitlab}`
(also first on PATH) wrapping this Python, a few images (`shoe.png`, `shirt.png`: Fashion-MNIST test images;
`photos/<class>/*.jpg`, 16 a class) and, unless the page trains it itself, `runs/fmnist`: a 3-step main job.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "guides").glob("*.md"))]
COMMAND_LANGS = ("bash", "sh", "python")
MARK = re.compile(r"^\s*<!--\s*(run by|not run|run|output)\b\s*:?\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
FIXTURE_RUN = "runs/fmnist"
FIXTURE_OVERRIDES = "schedule.steps=3 data.train_limit=768 train.compile=false"
TIMEOUT_S = 600


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    mark: str | None  # "run", "run by", "not run", "output" or None
    arg: str
    n_lines: int  # lines between the fences
    output: "Block | None" = None  # the output block that follows a command block

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"

    @property
    def is_command(self) -> bool:
        return self.lang in COMMAND_LANGS


def parse(page: Path) -> list[Block]:
    """The fenced blocks of a page with their markers; output blocks hang on the command block before them."""
    lines = page.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.groups()
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        code = "\n".join(ln[len(indent):] if ln.startswith(indent) else ln for ln in lines[i + 1:j]) + "\n"
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mk = MARK.match(lines[k]) if k >= 0 else None
        block = Block(page, i + 1, lang, code, mk.group(1) if mk else None, (mk.group(2) or "") if mk else "", j - i - 1)
        if block.mark == "output" and out and out[-1].is_command:
            out[-1].output = block
        out.append(block)
        i = j + 1
    return out


def problems(page: Path) -> list[str]:
    """What is wrong with a page's markers: unmarked command blocks, reasons missing, stray outputs."""
    bad = []
    blocks = parse(page)
    for n, b in enumerate(blocks):
        if b.is_command and b.mark not in ("run", "run by", "not run"):
            bad.append(f"{b.where}: a ```{b.lang} block without <!-- run ... --> or <!-- not run: REASON -->")
        if b.mark in ("not run", "run by") and not b.arg:
            bad.append(f"{b.where}: <!-- {b.mark}: ... --> needs a reason")
        if b.mark == "run by" and not (ROOT / b.arg.split(":")[0].split()[0]).is_file():
            bad.append(f"{b.where}: <!-- run by {b.arg} -->: no such test file")
        if b.mark == "run by" and b.arg.startswith("tests/test_docs_blocks.py") and not any(
                o.mark == "run" and o.code == b.code for p in PAGES for o in parse(p)):
            bad.append(f"{b.where}: <!-- run by {b.arg} -->: no other page runs this block as written")
        if b.mark == "output":
            prev = blocks[n - 1] if n else None
            if prev is None or prev.output is not b or not b.arg.startswith(("generated", "recorded")):
                bad.append(f"{b.where}: an output block must follow a command block and say 'generated' or 'recorded'")
            elif b.arg.startswith("generated") and prev.mark != "run":
                bad.append(f"{b.where}: a generated output needs its command block run as written (<!-- run -->)")
    return bad


# ----------------------------------------------------------------------------------------- running
WRAPPER = """#!/bin/sh
# {what}: this checkout's vitlab; `vitlab train` gets $VITLAB_DOC_OVERRIDES appended (the block's small sizes).
case " $* " in *" -m vitlab train "*) exec "{py}" {pre}"$@" $VITLAB_DOC_OVERRIDES;; esac
{train_check}exec "{py}" {pre}"$@"
"""


def _write_wrappers(bindir: Path) -> None:
    bindir.mkdir(parents=True, exist_ok=True)
    for name, pre, check in (("python", "", ""), ("python3", "", ""),
                             ("vitlab", "-m vitlab ",
                              'if [ "$1" = train ]; then exec "{py}" -m vitlab "$@" $VITLAB_DOC_OVERRIDES; fi\n')):
        f = bindir / name
        f.write_text(WRAPPER.format(what=name, py=sys.executable, pre=pre, train_check=check.format(py=sys.executable)))
        f.chmod(0o755)


def _images(box: Path) -> None:
    """shoe.png, shirt.png: Fashion-MNIST test images (a sneaker, a shirt); photos/: 3 classes of small RGB JPEGs."""
    import numpy as np
    from PIL import Image

    from vitlab.data import open_dataset

    test = open_dataset("fashion_mnist", "test")
    labels = np.asarray(test.labels)
    for name, cls in (("shoe", 7), ("shirt", 6)):
        img = test.images[int(np.flatnonzero(labels == cls)[0])].numpy()[0]
        Image.fromarray(img).save(box / f"{name}.png")
        Image.fromarray(img).convert("RGB").save(box / f"{name}.jpg")
    rng = np.random.default_rng(0)
    for c, colour in enumerate(((200, 60, 40), (40, 160, 60), (50, 70, 200))):
        d = box / "photos" / f"class_{'abc'[c]}"
        d.mkdir(parents=True)
        for k in range(16):
            h, w = rng.integers(40, 80, size=2)
            px = np.clip(rng.normal(colour, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(d / f"img_{k}.jpg", quality=90)


def make_sandbox(box: Path, fixture_run: Path | None = None) -> dict[str, str]:
    """Fill ``box`` (see the module docstring) and return the environment its blocks run in."""
    box.mkdir(parents=True, exist_ok=True)
    (box / "configs").symlink_to(ROOT / "configs")
    (box / "scripts").mkdir()
    for f in (ROOT / "scripts").iterdir():
        if f.name != "setup.sh":
            (box / "scripts" / f.name).symlink_to(f)
    (box / "scripts" / "setup.sh").write_text("# the tests run inside the set-up environment: nothing to do\n")
    _write_wrappers(box / ".venv" / "bin")
    _images(box)
    if fixture_run is not None:
        (box / "runs").mkdir()
        shutil.copytree(fixture_run, box / FIXTURE_RUN)
    env = {**os.environ, "PATH": f"{box / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "MPLBACKEND": "Agg", "VITLAB_DOC_OVERRIDES": ""}
    return env


def make_fixture_run(where: Path) -> Path:
    """runs/fmnist for the pages that use the main job's run without training it: 3 steps of it."""
    box = where / "fixture"
    env = make_sandbox(box)
    env["VITLAB_DOC_OVERRIDES"] = FIXTURE_OVERRIDES
    r = subprocess.run(["vitlab", "train", "--config", "configs/fmnist.yaml", "--out", FIXTURE_RUN],
                       cwd=box, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    if r.returncode:
        raise RuntimeError(f"the fixture run failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return box / FIXTURE_RUN


def needs_fixture(page: Path) -> bool:
    """Whether the page's run blocks use runs/fmnist without training it themselves."""
    run = [b.code for b in parse(page) if b.mark == "run"]
    return any(FIXTURE_RUN in c for c in run) and not any(f"--out {FIXTURE_RUN}" in c for c in run)


def run_block(block: Block, box: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run one block in the sandbox. Its output is ``.stdout`` (progress bars and warnings go to ``.stderr``)."""
    env = {**env, "VITLAB_DOC_OVERRIDES": block.arg.removeprefix("small").strip()}
    if block.lang == "python":
        (box / "_block.py").write_text(block.code)
        cmd = [str(box / ".venv" / "bin" / "python"), "_block.py"]
    else:
        cmd = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    return subprocess.run(cmd, cwd=box, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


# ---------------------------------------------------------------------------------------- outputs
NUMBER = re.compile(r"\d+(?:[.,]\d+)*(?:e[-+]?\d+)?")


def mask(text: str) -> list[str]:
    """Lines with every number replaced by N and runs of inner spaces by one (columns widen with the numbers):
    what stays when the sizes, times and accuracies change."""
    return [re.sub(r"(?<=\S)\s+", " ", NUMBER.sub("N", ln)).rstrip() for ln in text.strip("\n").splitlines() if ln.strip()]


def label(line: str) -> str:
    """The kind of a masked line: for a command echoed as `$ vitlab train ...`, its first words; else the text
    before its first ': ' (the whole line when it has none)."""
    if line.startswith("$ "):
        return " ".join(line.split()[:3])
    return line.split(": ", 1)[0]


def output_mismatch(block: Block, printed: str) -> str | None:
    """Why the recorded output of ``block`` no longer matches what it printed now, or None."""
    out = block.output
    assert out is not None
    now = mask(printed)
    if out.arg.startswith("generated"):
        if mask(out.code) != now:
            return (f"{out.where}: the output differs from what the command prints now; run: python3 scripts/gen_docs.py\n"
                    "now:\n" + printed)
        return None
    rec = mask(out.code)
    kinds_now = {label(ln) for ln in now}
    kinds_rec = {label(ln) for ln in rec if ln != "..."}
    new = sorted(kinds_now - kinds_rec)
    elided = {label(ln) for ln, nxt in zip(rec, rec[1:]) if nxt == "..."}  # a periodic line a small run may not reach
    gone = sorted(kinds_rec - kinds_now - elided)
    if new or gone:
        return (f"{out.where}: the recorded output is stale: lines the code prints now but the docs lack: {new}; "
                f"lines the docs show but the code no longer prints: {gone}\nnow:\n{printed}")
    return None


def generate_outputs(where: Path) -> list[Path]:
    """Rewrite every `generated` output block with what its command prints now (scripts/gen_docs.py)."""
    changed = []
    fixture = None
    for page in PAGES:
        blocks = parse(page)
        if not any(b.output is not None and b.output.arg.startswith("generated") for b in blocks):
            continue
        if fixture is None and needs_fixture(page):
            fixture = make_fixture_run(where)
        box = where / page.stem
        env = make_sandbox(box, fixture if needs_fixture(page) else None)
        text = page.read_text()
        for b in blocks:
            if b.mark != "run":
                continue
            r = run_block(b, box, env)
            if r.returncode:
                raise RuntimeError(f"{b.where} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
            if b.output is not None and b.output.arg.startswith("generated"):
                old = b.output
                indent = re.match(r"\s*", text.splitlines()[old.line - 1]).group(0)
                body = "".join(f"{indent}{ln}\n" for ln in r.stdout.strip("\n").splitlines())
                lines = text.splitlines(keepends=True)
                n_body = old.n_lines
                text = "".join(lines[:old.line] + [body] + lines[old.line + n_body:])
                blocks = _shift(blocks, old, len(r.stdout.strip("\n").splitlines()) - n_body)
        if text != page.read_text():
            page.write_text(text)
            changed.append(page)
    return changed


def _shift(blocks: list[Block], after: Block, delta: int) -> list[Block]:
    """Move the line numbers of the blocks after ``after`` by ``delta`` (an output block grew or shrank)."""
    for b in blocks:
        if b.line > after.line:
            b.line += delta
    return blocks
