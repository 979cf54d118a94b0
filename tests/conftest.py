"""Test-wide settings."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two xdist workers on two cores: one intra-op thread each avoids oversubscription
    torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def lore_cache(tmp_path_factory):
    """A cache folder for built reference models, shared by the tests of one process."""
    return tmp_path_factory.mktemp("lore-cache")
