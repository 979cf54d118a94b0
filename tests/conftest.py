"""Test-wide settings."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two xdist workers on two cores: one intra-op thread each avoids oversubscription
    torch.set_num_threads(1)
