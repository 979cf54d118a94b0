"""`--data FOLDER`: a directory link inside a class folder (a loop, or another class) is refused by name."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lore.data.images import build_dataset


def test_a_folder_with_a_link_loop_is_refused_before_it_is_scanned(tmp_path):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / name / "0.png")
    assert len(build_dataset(str(tmp_path), 8)) == 2
    os.symlink("../b", tmp_path / "a" / "b-too")
    with pytest.raises(ValueError, match="b-too is a link to the folder"):
        build_dataset(str(tmp_path), 8)
