"""The paper's zero-shot benchmark: dataset names, class names and prompt templates (CLIP_benchmark's).

Names follow CLIP_benchmark. Class names and templates come from where the
field takes them, never from the network:

- ImageNet and its variants (imagenet1k, imagenet-r, imagenet_sketch): open_clip's
  1000 OpenAI class names and 80 OpenAI templates (the variants keep the classes
  of their WordNet ids, in ImageNet order, as CLIP_benchmark does);
- caltech101, eurosat, flowers, pcam, pets: CLIP_benchmark's English class names;
- cars, cifar10, cifar100, dtd, fgvc_aircraft, stl10: the dataset's own files
  (CLIP_benchmark uses torchvision's `.classes` there), so they need the data root;
- templates: CLIP_benchmark's per-dataset English templates (ImageNet's otherwise).

CLIP_benchmark's files are read from the installed `clip-benchmark` package
(`pip install "lore-constrained[benchmark]"`) without importing it. This module
imports neither torch nor open_clip until a function needs them.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

from .imagenet import imagenet_classnames, imagenet_templates, imagenet_wnids
from .release_files import classnames_from_files, dataset_folder_wnids

#: The paper's Table 3 datasets in its column order (CLIP_benchmark names); imagenet1k is in-domain.
PAPER_DATASETS = ("imagenet1k", "caltech101", "cars", "cifar10", "cifar100", "dtd", "eurosat", "fgvc_aircraft",
                  "flowers", "imagenet-r", "imagenet_sketch", "pcam", "pets", "stl10")
#: The datasets averaged in the paper's "Average zero-shot" column (all but ImageNet).
ZERO_SHOT_DATASETS = PAPER_DATASETS[1:]
#: Column titles of the paper's table.
DISPLAY_NAMES = {"imagenet1k": "ImageNet", "caltech101": "CalTech", "cars": "Cars", "cifar10": "CIFAR10",
                 "cifar100": "CIFAR100", "dtd": "DTD", "eurosat": "EuroSAT", "fgvc_aircraft": "FGVC",
                 "flowers": "Flowers", "imagenet-r": "ImageNet-R", "imagenet_sketch": "ImageNet-S", "pcam": "PCAM",
                 "pets": "OxfordPets", "stl10": "STL-10"}
_IMAGENET_FAMILY = ("imagenet1k", "imagenet-r", "imagenet_sketch")
_NAMES_FROM_FILES = ("cars", "cifar10", "cifar100", "dtd", "fgvc_aircraft", "stl10")
#: Captions the embedded digits CLIP (`lore.models.digits_clip`) is pretrained on; its zero-shot prompt is the first.
DIGITS_CAPTIONS = ("a photo of the digit {}.", "a handwritten {}.", "the number {}.", "a picture of a {}.")
#: Prompt templates ("{}": the class name) of the zero-shot heads built for training probes, supervised
#: methods and `lore eval --data`, by model kind; every other kind uses "default". (The paper's benchmark
#: uses each dataset's own templates instead: `zero_shot_metadata`.)
PROMPT_TEMPLATES = {
    "digits-clip": DIGITS_CAPTIONS[:1],
    "default": ("a photo of a {}.", "a photo of the {}."),
}
INSTALL_HINT = 'pip install "lore-constrained[benchmark]"  (or: pip install clip-benchmark)'


def parse_benchmark(text: str) -> list[str]:
    """"cifar10, stl10" -> ["cifar10", "stl10"]; "paper" -> all 14 of Table 3; unknown names are refused."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    expanded: list[str] = []
    for name in names:
        for item in (PAPER_DATASETS if name == "paper" else (name,)):
            if item not in expanded:
                expanded.append(item)
    unknown = [n for n in expanded if n not in PAPER_DATASETS]
    if unknown:
        raise ValueError(f"benchmark: unknown dataset(s) {unknown}; choose from {list(PAPER_DATASETS)} or 'paper' (all 14)")
    if not expanded:
        raise ValueError(f"benchmark lists no dataset ({text!r}); e.g. --benchmark cifar10,stl10 or --benchmark paper")
    return expanded


def prompt_templates(model_kind: str) -> list[str]:
    """The prompt templates of `PROMPT_TEMPLATES` for a model kind ("digits-clip", "open_clip", ...)."""
    return list(PROMPT_TEMPLATES.get(model_kind, PROMPT_TEMPLATES["default"]))


def zero_shot_metadata(name: str, root: Optional[Union[str, Path]] = None) -> tuple[list[str], list[str]]:
    """Class names (in label order) and prompt templates (with a "{}" slot) of a benchmark dataset.

    Args:
        name: a CLIP_benchmark name from `PAPER_DATASETS`.
        root: the benchmark data root. Needed for imagenet-r / imagenet_sketch (their classes are the
            WordNet-id folders present; for imagenet1k too when given, so a class subset stays aligned)
            and for the datasets whose class names live in their own files (cars, cifar10, cifar100,
            dtd, fgvc_aircraft, stl10).

    Returns:
        (classnames, templates), e.g. `zero_shot_metadata("imagenet1k")[0][0] == "tench"`.
    """
    if name not in PAPER_DATASETS:
        raise ValueError(f"no zero-shot metadata for {name!r}; known: {list(PAPER_DATASETS)}")
    if name in _IMAGENET_FAMILY:
        names = imagenet_classnames()
        if name != "imagenet1k" and root is None:
            raise ValueError(f"{name}: its classes are the WordNet-id folders of the data; pass root=")
        if root is not None:  # the classes present on disk, in ImageNet order (a 100-class subset stays consistent)
            index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
            names = [names[index[w]] for w in dataset_folder_wnids(name, root)]
        return names, imagenet_templates()
    if name in _NAMES_FROM_FILES:
        if root is None:
            raise ValueError(f"{name}: its class names are read from the dataset's own files; pass root= (the data root)")
        names = classnames_from_files(name, root)
    else:
        names = list(_clip_benchmark_json("en_classnames.json")[name])
    return names, _templates(name)


def _templates(name: str) -> list[str]:
    templates = _clip_benchmark_json("en_zeroshot_classification_templates.json")
    return [t.replace("{c}", "{}") for t in templates.get(name, templates["imagenet1k"])]


@lru_cache(maxsize=None)
def _clip_benchmark_json(filename: str) -> dict:
    spec = importlib.util.find_spec("clip_benchmark")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the benchmark's class names and templates come from CLIP_benchmark: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed clip-benchmark; reinstall it ({INSTALL_HINT})")
    return json.loads(path.read_text())
