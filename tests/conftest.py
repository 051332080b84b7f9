import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory):
    """A tiny generated catalogue in the benchmark layout: 12 classes x 9 photos at 64x48."""
    from visnet.data.catalogue import generate_catalogue

    root = tmp_path_factory.mktemp("catalogue")
    generate_catalogue(str(root), articles_per_type=3, photos=3, size=(64, 48),
                       shapes=("t-shirt", "dress", "bag"), seed=0)
    return str(root)
