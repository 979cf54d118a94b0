"""Where each benchmark dataset lives on disk, and what its release files say (torch-free).

`locate(name, root)` finds a dataset's own folder in the layout its official release unpacks to (`LAYOUTS`),
under ROOT or ROOT/NAME; a missing one raises `BenchmarkDataMissing` naming that layout. The class names
that live in a release's own files (CIFAR meta pickles, STL-10's class_names.txt, ...) and the WordNet-id
folders of the ImageNet family are read here. Images are read by `lore.data.benchmark`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Union

from .imagenet import imagenet_wnids

#: Where each dataset is expected, relative to ROOT or ROOT/NAME (the layout of its official release).
LAYOUTS = {
    "imagenet1k": "imagenet1k/val/<wnid>/*.JPEG (and imagenet1k/train/<wnid>/ for a linear head): "
                  "ILSVRC2012 in class folders named by WordNet id, n01440764 ... n15075141",
    "caltech101": "caltech101/101_ObjectCategories/<category>/image_0001.jpg (101 categories + BACKGROUND_Google)",
    "cars": "stanford_cars/{devkit/cars_meta.mat, cars_test_annos_withlabels.mat, cars_test/} (torchvision StanfordCars)",
    "cifar10": "cifar-10-batches-py/{test_batch, data_batch_1..5, batches.meta} (the 'python version' tarball)",
    "cifar100": "cifar-100-python/{test, train, meta} (the 'python version' tarball)",
    "dtd": "dtd/dtd/{images/<texture>/*.jpg, labels/test1.txt, labels/train1.txt} (torchvision DTD)",
    "eurosat": "eurosat/2750/<class>/*.jpg (EuroSAT RGB, 10 class folders)",
    "fgvc_aircraft": "fgvc-aircraft-2013b/data/{images/, variants.txt, images_variant_test.txt} (torchvision FGVCAircraft)",
    "flowers": "flowers-102/{jpg/image_00001.jpg, imagelabels.mat, setid.mat}",
    "imagenet-r": "imagenet-r/<wnid>/*.jpg (200 WordNet-id folders)",
    "imagenet_sketch": "imagenet_sketch/<wnid>/*.JPEG or imagenet_sketch/sketch/<wnid>/ (1000 WordNet-id folders)",
    "pcam": "pcam/camelyonpatch_level_2_split_test_{x,y}.h5 (needs h5py)",
    "pets": "oxford-iiit-pet/{images/*.jpg, annotations/test.txt, annotations/trainval.txt} (torchvision OxfordIIITPet)",
    "stl10": "stl10_binary/{test_X.bin, test_y.bin, train_X.bin, train_y.bin, class_names.txt}",
}
_NATIVE = {"imagenet1k": "imagenet1k", "caltech101": "caltech101/101_ObjectCategories", "cars": "stanford_cars",
           "cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python", "dtd": "dtd/dtd", "eurosat": "eurosat/2750",
           "fgvc_aircraft": "fgvc-aircraft-2013b", "flowers": "flowers-102", "imagenet-r": "imagenet-r",
           "imagenet_sketch": "imagenet_sketch", "pcam": "pcam", "pets": "oxford-iiit-pet", "stl10": "stl10_binary"}


class BenchmarkDataMissing(FileNotFoundError):
    """A benchmark dataset is not on disk (or not in the expected layout); the message gives the layout."""


def locate(name: str, root: Union[str, Path]) -> Path:
    """The dataset's own folder: ROOT/<native> or ROOT/NAME/<native> (e.g. ROOT/cifar-10-batches-py)."""
    root = Path(root).expanduser()
    native = _NATIVE[name]
    for candidate in (root / native, root / name / native):
        if candidate.is_dir():
            return candidate
    raise BenchmarkDataMissing(f"{name}: not found under {root} (looked for {root / native} and {root / name / native}); "
                               f"expected layout: {LAYOUTS[name]}. Nothing is downloaded here")


def classnames_from_files(name: str, root: Union[str, Path]) -> list[str]:
    """Class names that live in the dataset's own files (cars, cifar10, cifar100, dtd, fgvc_aircraft, stl10)."""
    folder = locate(name, root)
    if name == "cifar10":
        return [c.replace("_", " ") for c in read_cifar_pickle(need_file(folder / "batches.meta"))["label_names"]]
    if name == "cifar100":
        return [c.replace("_", " ") for c in read_cifar_pickle(need_file(folder / "meta"))["fine_label_names"]]
    if name == "stl10":
        return [line.strip() for line in need_file(folder / "class_names.txt").read_text().splitlines() if line.strip()]
    if name == "dtd":
        return sorted(p.name for p in need_file(folder / "images").iterdir() if p.is_dir())
    if name == "fgvc_aircraft":
        return [line.strip() for line in need_file(folder / "data" / "variants.txt").read_text().splitlines() if line.strip()]
    if name == "cars":
        from scipy.io import loadmat

        meta = loadmat(str(need_file(folder / "devkit" / "cars_meta.mat")), squeeze_me=True)
        return [str(c) for c in meta["class_names"]]
    raise ValueError(f"{name}: class names do not come from its files")


def dataset_folder_wnids(name: str, root: Union[str, Path]) -> list[str]:
    """The sorted WordNet-id class folders of an ImageNet-style dataset; unknown folder names are refused."""
    return wnid_folders(name, imagenet_split_folder(name, locate(name, root), "test"))


def wnid_folders(name: str, folder: Path) -> list[str]:
    wnids = sorted(p.name for p in folder.iterdir() if p.is_dir())
    known = set(imagenet_wnids())
    unknown = [w for w in wnids if w not in known]
    if unknown or not wnids:
        raise BenchmarkDataMissing(f"{name}: {folder} must hold class folders named by ImageNet WordNet ids "
                                   f"(n01440764, ...); found {unknown[:5] or 'none'}")
    return wnids


def need_file(path: Path) -> Path:
    if not path.exists():
        raise BenchmarkDataMissing(f"missing {path} (the dataset's folder exists but this file of its release does not)")
    return path


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a CIFAR batch cannot run code when read."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: CIFAR files hold only arrays and lists")
        return super().find_class(module, name)


def read_cifar_pickle(path: Path) -> dict:
    with open(path, "rb") as handle:
        try:
            data = _ArraysOnlyUnpickler(handle, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise ValueError(f"{path} is not a CIFAR python-version file: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a CIFAR python-version file (no dict inside)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def imagenet_split_folder(name: str, folder: Path, split: str) -> Path:
    if name == "imagenet1k":
        return need_file(folder / ("val" if split == "test" else "train"))
    if name == "imagenet_sketch" and (folder / "sketch").is_dir():
        return folder / "sketch"
    return folder


#: the class folders of the releases read as image folders, exactly as released; their sorted order is the label
#: order of CLIP_benchmark's class names (checked against its en_classnames.json: the same order, renamed)
RELEASE_FOLDERS = {
    "eurosat": ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
                "Residential", "River", "SeaLake"),
    "caltech101": tuple(["BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "Motorbikes"] + """
        accordion airplanes anchor ant barrel bass beaver binocular bonsai brain brontosaurus buddha butterfly camera
        cannon car_side ceiling_fan cellphone chair chandelier cougar_body cougar_face crab crayfish crocodile
        crocodile_head cup dalmatian dollar_bill dolphin dragonfly electric_guitar elephant emu euphonium ewer ferry
        flamingo flamingo_head garfield gerenuk gramophone grand_piano hawksbill headphone hedgehog helicopter ibis
        inline_skate joshua_tree kangaroo ketch lamp laptop llama lobster lotus mandolin mayfly menorah metronome
        minaret nautilus octopus okapi pagoda panda pigeon pizza platypus pyramid revolver rhino rooster saxophone
        schooner scissors scorpion sea_horse snoopy soccer_ball stapler starfish stegosaurus stop_sign strawberry
        sunflower tick trilobite umbrella watch water_lilly wheelchair wild_cat windsor_chair wrench yin_yang
        """.split()),
}


#: images in the split the benchmark evaluates, as released (None: not pinned here); a smaller count means a
#: partial copy, which is reported (`check_data`, each result's warnings), not silently evaluated as the whole
RELEASE_COUNTS = {"imagenet1k": 50_000, "caltech101": None, "cars": 8_041, "cifar10": 10_000, "cifar100": 10_000,
                  "dtd": 1_880, "eurosat": 27_000, "fgvc_aircraft": 3_333, "flowers": 6_149, "imagenet-r": 30_000,
                  "imagenet_sketch": 50_889, "pcam": 32_768, "pets": 3_669, "stl10": 8_000}
