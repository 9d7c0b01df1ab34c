"""A generated text corpus and its word counts computed directly, for the MapReduce examples'
tests: the engines' answers are checked word by word against ``Counter``."""

from __future__ import annotations

import os
import random
import shutil
import sys
from collections import Counter
from pathlib import Path

from tests.integration.farmkit import REPO, Farm

EXAMPLES = REPO / "examples" / "mapreduce"


def write_corpus(folder: Path, files: int, lines: int, seed: int = 16) -> Counter[str]:
    """Text files of random words (a skewed vocabulary, as real text is) and their counts."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(3000)] + ["the", "of", "and", "farm", "node"]
    weights = [1.0 / (rank + 1) for rank in range(len(vocabulary))]
    counts: Counter[str] = Counter()
    for number in range(files):
        with open(folder / f"part-{number:03d}.txt", "w") as out:
            for _ in range(lines):
                words = rng.choices(vocabulary, weights, k=rng.randint(0, 14))
                counts.update(words)
                out.write("  ".join(words) + ("\t\n" if number % 2 else "\n"))
    return counts


def example_farm(folder: Path, farm_file: str, ports: dict[str, int]) -> Farm:
    """The example farm file with its fixed ports swapped for free ones, in ``folder`` with
    the example's scripts beside it; the venv's commands (dask, spark-class) on its PATH."""
    text = (EXAMPLES / farm_file).read_text()
    for old, new in ports.items():
        text = text.replace(old, str(new))
    farm = Farm(folder, text)
    for script in EXAMPLES.glob("*.py"):
        shutil.copy(script, folder / script.name)
    farm.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{farm.env.get('PATH', '')}"
    return farm
