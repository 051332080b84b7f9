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


@pytest.fixture(scope="session")
def weak_run(catalogue, tmp_path_factory):
    """A tiny weak-label (`weakly`) run on the catalogue's names: 10 short epochs."""
    from visnet.training.config import TrainConfig
    from visnet.training.trainer import train

    config = TrainConfig(arch="weakly", data=catalogue, out=str(tmp_path_factory.mktemp("runs") / "weakly"),
                         image_size=(64, 48), backbone="koch", backbone_options={"width": 4}, embedding_dim=16,
                         negatives=8, batch_size=24, val="images:0.34", epochs=10, steps_per_epoch=10, lr=3e-3,
                         freeze_epochs=1, augment=False)
    return train(config, progress=False)


@pytest.fixture(scope="session")
def siamese_run(catalogue, tmp_path_factory):
    """A tiny siamese run: one short epoch, enough for export and serving tests."""
    from visnet.training.config import TrainConfig
    from visnet.training.trainer import train

    config = TrainConfig(arch="siamese", data=catalogue, out=str(tmp_path_factory.mktemp("runs") / "siamese"),
                         image_size=(64, 48), backbone="koch", backbone_options={"width": 4}, embedding_dim=16,
                         p=6, k=4, val="images:0.34", epochs=1, steps_per_epoch=2, augment=False)
    return train(config, progress=False)
