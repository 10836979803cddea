"""Settings for ``make test``, which runs the suite under pytest-xdist, one worker per core: they
apply to the tests and to the book's notebooks (nbval) alike."""

from __future__ import annotations

import os

import pytest


def _share_of_the_cores() -> None:
    """Each worker's torch, and the notebook kernels it starts, get the worker's share of the cores:
    two workers of two threads each on two cores would oversubscribe them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


_share_of_the_cores()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A notebook's cells run in order in one kernel: under ``--dist loadgroup`` they form one group, so
    one worker runs them all (before xdist reads the groups, hence ``tryfirst``)."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.xdist_group(f"notebook-{item.path.stem}"))

