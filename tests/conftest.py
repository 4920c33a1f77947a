from pathlib import Path

import pytest

from hardmine.data.synth import generate_demo


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A small HAM10000-layout demo set shared by the tests (read-only for them)."""
    out = tmp_path_factory.mktemp("demo")
    generate_demo(out, n=400, positive_frac=0.15, size=32, seed=3)
    return out


@pytest.fixture
def demo_copy(demo_dir, tmp_path) -> Path:
    """A private copy of the demo set that a test may damage."""
    import shutil

    dst = tmp_path / "data"
    shutil.copytree(demo_dir, dst)
    return dst
