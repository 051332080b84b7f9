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


API_KEY = "test-key"


@pytest.fixture(scope="session")
def gallery_files(weak_run, catalogue, tmp_path_factory):
    """An export of the tiny weak-label run and a saved gallery of the catalogue's first 30 photos."""
    from visnet.data.readers import load_dataset
    from visnet.exported import ExportedModel
    from visnet.exporting import export_run
    from visnet.index import Gallery

    root = tmp_path_factory.mktemp("service")
    model_path = str(root / "models" / "words")
    export_run(weak_run, model_path, which="last")
    model = ExportedModel(model_path)
    dataset = load_dataset(catalogue)
    records = [dataset[i] for i in range(30)]
    vectors, valid = model.embed([open(r.path, "rb").read() for r in records])
    assert valid.all()
    gallery = Gallery("brute")
    gallery.add_many([{"id": r.id, "image": r.path, "label": r.label, "text": r.text} for r in records], vectors)
    gallery.save(str(root / "index"), model={"name": "words", "version": "1"})
    return model_path, str(root / "index"), records, model


@pytest.fixture(scope="module")
def service(gallery_files, tmp_path_factory):
    """The API served by uvicorn in a thread, on its own copy of the gallery: (base URL, model, records, index)."""
    import shutil

    from helpers import serve_in_thread

    from serving.api import ApiSettings, create_app

    model_path, index, records, model = gallery_files
    index_copy = str(tmp_path_factory.mktemp("live") / "index")
    shutil.copytree(index, index_copy)
    app = create_app(ApiSettings(model=model_path, index=index_copy, api_key=API_KEY, max_pixels=4_000_000),
                     predictor=model)
    url, stop = serve_in_thread(app)
    yield url, model, records, index_copy
    stop()
