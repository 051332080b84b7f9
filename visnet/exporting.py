"""A trained run as a SavedModel for TF Serving: image bytes in, embeddings (and tags) out.

    export_run(Run("runs/x"), "models/shop")          # -> models/shop/1/ (the next free version)

Layout written (TF Serving's):

    models/shop/
        1/saved_model.pb, variables/, assets.extra/
            tf_serving_warmup_requests   PredictionLog records TF Serving replays at load
            visnet.json                  image spec, architecture, embedding size, signatures
            vocabulary.json              the words of a weak-label run (tags, text search)
        models.config                    --model_config_file for tensorflow_model_server
        batching_parameters.txt          --batching_parameters_file

Signatures:

- `serving_default`: `image_bytes` (batch of encoded JPEG/PNG/GIF/BMP strings, any size) ->
  `embedding` (batch, d) float32, L2-normalised, and `valid` (batch,) bool. Decoding, resizing and
  normalisation are the training pipeline's own graph functions (`visnet.data.pipeline`).
- `tags` (weak-label runs): `image_bytes` -> `words` (batch, k) strings and `scores` (batch, k)
  probabilities, the top-k tags with the catalogue's word frequencies as prior (`WordModel.tag`).
- `text_query` (weak-label runs): `word_ids` (batch, m) int32, -1 padded -> `query` (batch, d):
  the vector whose dot product with an image embedding is the summed score of the words
  (`visnet.layers.WordScores`), so text search is a vector search; the vocabulary in
  `assets.extra` maps text to ids.

A bad string inside a batch does not poison it: each string is checked in the graph before it is
decoded, by its header (a JPEG, PNG, GIF or BMP signature), by its end (a JPEG's end-of-image
marker, a PNG's IEND chunk, a GIF's trailer: truncated uploads fail here) and by its pixel count
read from the header (at most `max_pixels`, against decompression bombs). A string that fails gets
`valid = False` and an all-zero embedding; the others are embedded as usual. A string that passes
these checks but is corrupt inside (damaged compressed data) makes the decoder fail the whole
request with INVALID_ARGUMENT; visnet's API and clients decode-check each image before sending,
and name the bad one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from visnet.data.image_spec import ImageSpec
from visnet.data.pipeline import normalize_image, resize_image

#: Default pixel limit of an image the served graph decodes (width x height).
MAX_PIXELS = 40_000_000
TAGS_K = 10
METADATA_FILE = "visnet.json"
WARMUP_FILE = "tf_serving_warmup_requests"


# Graph-side checks -------------------------------------------------------------------------
def _bytes_at(data, start: int, length: int):
    return tf.cast(tf.io.decode_raw(tf.strings.substr(data, start, length), tf.uint8), tf.int64)


def _big_endian(data, start: int, length: int):
    weights = tf.constant([256 ** (length - 1 - i) for i in range(length)], tf.int64)
    return tf.reduce_sum(_bytes_at(data, start, length) * weights)


def _little_endian(data, start: int, length: int):
    weights = tf.constant([256**i for i in range(length)], tf.int64)
    return tf.reduce_sum(_bytes_at(data, start, length) * weights)


def image_check(data: tf.Tensor, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """True when `data` (one encoded image) has a known header, an intact end and at most `max_pixels` pixels.

    Reads headers only: nothing is decoded, so a decompression bomb costs nothing here.
    """
    length = tf.strings.length(data)
    head = tf.strings.substr(data, 0, 8)
    is_png = tf.equal(head, b"\x89PNG\r\n\x1a\n")
    is_gif = tf.logical_or(tf.equal(tf.strings.substr(data, 0, 6), b"GIF87a"),
                           tf.equal(tf.strings.substr(data, 0, 6), b"GIF89a"))
    is_bmp = tf.equal(tf.strings.substr(data, 0, 2), b"BM")
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff")
    big_enough = length >= 26

    def jpeg_pixels():
        ends = tf.equal(tf.strings.substr(data, length - 2, 2), b"\xff\xd9")

        def shape():
            size = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)
            return size[0] * size[1]

        return tf.cond(ends, shape, lambda: tf.constant(-1, tf.int64))

    def png_pixels():
        ends = tf.equal(tf.strings.substr(data, length - 8, 8), b"IEND\xaeB`\x82")
        pixels = _big_endian(data, 16, 4) * _big_endian(data, 20, 4)
        return tf.where(ends, pixels, tf.constant(-1, tf.int64))

    def gif_pixels():
        ends = tf.equal(tf.strings.substr(data, length - 1, 1), b"\x3b")
        pixels = _little_endian(data, 6, 2) * _little_endian(data, 8, 2)
        return tf.where(ends, pixels, tf.constant(-1, tf.int64))

    def bmp_pixels():
        declared = _little_endian(data, 2, 4)
        width = _little_endian(data, 18, 4)
        height = _little_endian(data, 22, 4)
        height = tf.where(height >= 2**31, 2**32 - height, height)  # negative height: top-down rows
        return tf.where(tf.logical_and(declared <= tf.cast(length, tf.int64), width < 2**31), width * height,
                        tf.constant(-1, tf.int64))

    pixels = tf.case(
        [(tf.logical_not(big_enough), lambda: tf.constant(-1, tf.int64)),
         (is_jpeg, jpeg_pixels), (is_png, png_pixels), (is_gif, gif_pixels), (is_bmp, bmp_pixels)],
        default=lambda: tf.constant(-1, tf.int64), exclusive=False)
    return tf.logical_and(pixels > 0, pixels <= max_pixels)


def prepare_batch(image_bytes: tf.Tensor, spec: ImageSpec, max_pixels: int = MAX_PIXELS):
    """(batch,) encoded strings -> (normalised images (batch, h, w, 3), valid (batch,) bool).

    Invalid strings (see `image_check`) become an image of the padding colour and are not decoded.
    """
    from visnet.data.pipeline import decode_image

    def one(data):
        ok = image_check(data, max_pixels)
        image = tf.cond(ok, lambda: resize_image(decode_image(data, spec.pad_value), spec),
                        lambda: tf.fill([spec.height, spec.width, 3], tf.constant(spec.pad_value, tf.float32)))
        return image, ok

    images, valid = tf.map_fn(one, image_bytes, fn_output_signature=(
        tf.TensorSpec([spec.height, spec.width, 3], tf.float32), tf.TensorSpec([], tf.bool)))
    return normalize_image(images, spec.normalization), valid


# The exported module -----------------------------------------------------------------------
class ServingModule(tf.Module):
    """The tf.Module saved: the embedding model, optionally the word head, and the signatures."""

    def __init__(self, embedding_model, spec: ImageSpec, max_pixels: int = MAX_PIXELS, word_model=None,
                 tags_k: int = TAGS_K):
        super().__init__()
        self.embedding_model, self.spec, self.max_pixels = embedding_model, spec, max_pixels
        self.word_model = word_model
        if word_model is not None:
            self.head = word_model.head
            self.words = tf.constant(np.array(word_model.vocabulary.words, dtype=object))
            # The same prior as `WordModel.tag_scores`: (1 - word_power) * log count.
            prior = (1.0 - float(word_model.word_power)) * np.log(word_model.vocabulary.counts)
            self.log_counts = tf.constant(prior.astype(np.float32))
            self.scale = float(word_model.scale)
            self.tags_k = min(tags_k, len(word_model.vocabulary))

    def embed(self, image_bytes):
        images, valid = prepare_batch(image_bytes, self.spec, self.max_pixels)
        embedding = tf.cast(self.embedding_model(images, training=False), tf.float32)
        return tf.where(valid[:, None], embedding, tf.zeros_like(embedding)), valid

    def signatures(self) -> dict:
        batch = tf.TensorSpec([None], tf.string, name="image_bytes")

        @tf.function(input_signature=[batch])
        def serving_default(image_bytes):
            embedding, valid = self.embed(image_bytes)
            return {"embedding": embedding, "valid": valid}

        signatures = {"serving_default": serving_default}
        if self.word_model is None:
            return signatures

        @tf.function(input_signature=[batch])
        def tags(image_bytes):
            embedding, valid = self.embed(image_bytes)
            logits = self.scale * tf.cast(self.head.scores(embedding), tf.float32) + self.log_counts[None, :]
            probabilities = tf.nn.softmax(logits, axis=-1)
            top = tf.math.top_k(probabilities, k=self.tags_k)
            scores = tf.where(valid[:, None], top.values, tf.zeros_like(top.values))
            return {"words": tf.gather(self.words, top.indices), "scores": scores, "valid": valid}

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="word_ids")])
        def text_query(word_ids):
            return {"query": word_query(self.head, word_ids)}

        signatures.update(tags=tags, text_query=text_query)
        return signatures


def word_query(head, word_ids):
    """(batch, m) word ids, -1 padded -> (batch, d) query q whose dot product with an image embedding z is
    the sum of the words' scores, so text search is a nearest-neighbour search with q.

    Scores are linear in z: with `types = T > 1`, `build_weakly` makes z = T^-1/2 [ẑ_1, ..., ẑ_T]
    (unit sub-vectors), so q = T^1/2 [sum_k p_k,t ŵ_k]_t.
    """
    raw = tf.cast(tf.gather(head.words, tf.maximum(word_ids, 0)), tf.float32)
    vectors = raw / tf.sqrt(tf.reduce_sum(tf.square(raw), axis=-1, keepdims=True) + 1e-12)
    mask = tf.cast(word_ids >= 0, tf.float32)[..., None]
    if head.types == 1:
        return tf.reduce_sum(vectors * mask, axis=1)
    weights = tf.cast(head.type_distribution(raw), tf.float32)  # (batch, m, types), from the raw vectors
    query = tf.einsum("bmt,bmd->btd", weights * mask, vectors) * float(head.types) ** 0.5
    return tf.reshape(query, (tf.shape(word_ids)[0], head.types * head.dim))


# Files beside the model ---------------------------------------------------------------------
def versions(base_path: str) -> list[int]:
    """The numeric version directories under `base_path`, ascending (TF Serving's rule)."""
    if not os.path.isdir(base_path):
        return []
    return sorted(int(name) for name in os.listdir(base_path)
                  if name.isdigit() and os.path.isdir(os.path.join(base_path, name)))


def sample_jpeg(spec: ImageSpec, seed: int = 0) -> bytes:
    """A small JPEG of random pixels at the model's input size (warm-up and smoke requests)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)
    return tf.io.encode_jpeg(pixels).numpy()


def write_warmup(path: str, model_name: str, signatures: list[str], images: list[bytes]) -> None:
    """TF Serving's warm-up file: one PredictionLog per signature, replayed when the model loads."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for name in signatures:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name=name))
            if name == "text_query":
                request.inputs["word_ids"].CopyFrom(tf.make_tensor_proto(np.array([[0, 1, -1]], np.int32)))
            else:
                request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def model_server_config(name: str, base_path: str) -> str:
    """A `--model_config_file` (text protobuf) serving every version's newest, as TF Serving does by default."""
    return ("model_config_list {\n  config {\n"
            f"    name: \"{name}\"\n    base_path: \"{base_path}\"\n    model_platform: \"tensorflow\"\n"
            "  }\n}\n")


def batching_parameters(max_batch_size: int = 32, timeout_micros: int = 2000, threads: int = 2) -> str:
    """A `--batching_parameters_file`: server-side batching of concurrent requests."""
    return (f"max_batch_size {{ value: {max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {timeout_micros} }}\n"
            "max_enqueued_batches { value: 100 }\n"
            f"num_batch_threads {{ value: {threads} }}\n")


# Export ---------------------------------------------------------------------------------------
def export_run(run, out: str, version: int | None = None, which: str = "best", max_pixels: int = MAX_PIXELS,
               tags_k: int = TAGS_K, overwrite: bool = False, image_size=None,
               imagenet=None) -> str:
    """Exports checkpoint `which` of `run` to `out/<version>/`; returns that directory.

    Args:
        run: `visnet.training.runs.Run`, or a `RunEnsemble` (its members as one model).
        out: str. The model's base path (`models/<name>`); its name is the folder name.
        version: int or None. The version directory; None takes the next after the highest present.
        which: str. `best` or `last` checkpoint.
        max_pixels: int. Largest image (width x height) the served graph decodes.
        tags_k: int. Words returned by the `tags` signature (weak-label runs).
        overwrite: bool. Replace an existing version directory.
        image_size: (height, width) or None. Serve the model rebuilt at this input size (`Run.model`).
        imagenet: `visnet.models.imagenet_classes.ImageNetClasses` or None. The ImageNet class
            embedding beside the run's.

    The version is written to a temporary folder and renamed into place, so a model server
    polling `out` never loads a half-written version.
    """
    if version is not None and version < 1:
        raise ValueError(f"version must be >= 1. Received: version={version}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1. Received: max_pixels={max_pixels}")
    if tags_k < 1:
        raise ValueError(f"tags_k must be >= 1. Received: tags_k={tags_k}")
    out = os.path.abspath(out)
    name = os.path.basename(out.rstrip(os.sep))
    version = version if version is not None else (versions(out) or [0])[-1] + 1
    target = os.path.join(out, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{target} exists: choose another --version or pass --overwrite.")

    if run.arch == "weakly" and (image_size is not None or imagenet is not None):
        raise ValueError("A weak-label run is exported as trained (its text search scores its own embedding): "
                         f"image_size and imagenet do not apply to it. Received: image_size={image_size}, "
                         f"imagenet={imagenet}")
    word_model = run.word_model(which) if run.arch == "weakly" else None
    if word_model is not None:
        model, spec = word_model.embedding_model, run.image_spec
    else:
        embedder = run.embedder(which, image_size=image_size, imagenet=imagenet)
        model, spec = embedder.model, embedder.image_spec
    module = ServingModule(model, spec, max_pixels, word_model, tags_k)
    signatures = module.signatures()
    os.makedirs(out, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{version}-", dir=out)  # a non-numeric name: invisible to servers
    try:
        tf.saved_model.save(module, staging, signatures=signatures)
        extra = os.path.join(staging, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        sample = sample_jpeg(spec)
        write_warmup(os.path.join(extra, WARMUP_FILE), name, list(signatures), [sample, sample])
        embedding_dim = int(model.outputs[0].shape[-1])
        metadata = {
            "name": name, "version": version, "run": run.source, "checkpoint": which,
            "arch": run.arch, "embedding_dim": embedding_dim, "image_spec": spec.to_dict(),
            "max_pixels": max_pixels, "signatures": sorted(signatures),
        }
        if imagenet is not None:
            metadata["imagenet_classes"] = imagenet.to_dict()
        if word_model is not None:
            word_model.vocabulary.save(os.path.join(extra, "vocabulary.json"))
            metadata.update(types=int(word_model.head.types), tags_k=module.tags_k)
        with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as handle:
            json.dump(metadata, handle, indent=2)
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
    with open(os.path.join(out, "models.config"), "w", encoding="utf-8") as handle:
        handle.write(model_server_config(name, out))
    with open(os.path.join(out, "batching_parameters.txt"), "w", encoding="utf-8") as handle:
        handle.write(batching_parameters())
    return target


def read_metadata(version_dir: str) -> dict:
    """The `visnet.json` an export wrote beside its SavedModel."""
    path = os.path.join(version_dir, "assets.extra", METADATA_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{version_dir} is not a visnet export: {path} is missing.")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def latest_version(base_path: str) -> str:
    """The highest version directory under a model's base path (what TF Serving loads)."""
    found = versions(base_path)
    if not found:
        raise FileNotFoundError(f"No model version (a numeric folder such as {base_path}/1) under {base_path}.")
    return os.path.join(base_path, str(found[-1]))
