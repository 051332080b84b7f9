"""An exported model (`visnet.export`) loaded in this process, and what every way of running one shares.

    model = ExportedModel("models/shop")           # the highest version, as TF Serving loads it
    embeddings, valid = model.embed([jpeg_bytes])  # (1, d), (1,)
    model.predict({"image_bytes": [jpeg]})         # the raw signature call

`Predictor` is the common interface: `ExportedModel` here, and the TF Serving clients of
`serving.clients` (gRPC, REST); `visnet.index build`, `serving.grpc_server` and the search API
take any of them. The errors below are what a caller of any `Predictor` handles.
"""

from __future__ import annotations

import os

import numpy as np


# Errors ----------------------------------------------------------------------------------------
class ServingError(RuntimeError):
    """Base class: something went wrong talking to a model server."""


class ModelNotFoundError(ServingError):
    """No such model (or version) is loaded."""


class SignatureNotFoundError(ServingError):
    """The model has no signature of that name."""


class InvalidInputError(ServingError, ValueError):
    """The request's inputs do not fit the signature, or the model failed on them."""


class UnavailableError(ServingError):
    """The server did not answer (down, restarting or overloaded) after every retry."""


class DeadlineError(ServingError):
    """The server did not answer within the timeout."""


def check_input_names(signature: str, specs, names) -> None:
    """InvalidInputError unless `names` are exactly the signature's inputs (TF Serving's messages)."""
    unknown = set(names) - set(specs)
    if unknown:
        raise InvalidInputError(f"input tensor alias not found in signature {signature!r}: {sorted(unknown)} "
                                f"(inputs: {sorted(specs)}).")
    missing = set(specs) - set(names)
    if missing:
        raise InvalidInputError(f"signature {signature!r} needs inputs {sorted(missing)}.")


# The interface ---------------------------------------------------------------------------------
class Predictor:
    """A model behind `predict`; subclasses implement `predict` (a subclass that only embeds, such as a
    test stub, may override `embed` alone)."""

    def predict(self, inputs: dict, signature: str = "serving_default") -> dict:
        """Runs `signature` on `inputs` (name -> array-like); returns name -> numpy array."""
        raise NotImplementedError(f"{type(self).__name__} does not implement predict().")

    def embed(self, images: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings (n, d), valid (n,)) of encoded images: `valid` is False where a string is not a usable image."""
        out = self.predict({"image_bytes": list(images)})
        return np.asarray(out["embedding"], np.float32), np.asarray(out["valid"], bool)

    def tags(self, images: list[bytes]) -> list[list[tuple[str, float]]]:
        """The top words of each image (weak-label models), best first; [] for an invalid image."""
        out = self.predict({"image_bytes": list(images)}, "tags")
        words, scores, valid = np.asarray(out["words"]), np.asarray(out["scores"]), np.asarray(out["valid"], bool)
        return [[(w.decode() if isinstance(w, bytes) else str(w), float(s)) for w, s in zip(ws, ss)] if ok else []
                for ws, ss, ok in zip(words, scores, valid)]

    def text_query(self, word_ids: list[list[int]]) -> np.ndarray:
        """Query vectors of texts given as vocabulary ids (weak-label models); see `visnet.exporting.word_query`."""
        width = max((len(ids) for ids in word_ids), default=0) or 1
        padded = np.full((len(word_ids), width), -1, np.int32)
        for row, ids in enumerate(word_ids):
            padded[row, : len(ids)] = ids
        return np.asarray(self.predict({"word_ids": padded}, "text_query")["query"], np.float32)


# In this process -------------------------------------------------------------------------------
class ExportedModel(Predictor):
    """The highest version of a model base path (`models/NAME`), loaded with `tf.saved_model.load`.

    Args:
        base_path: str. The folder holding numeric version folders.
        name: str or None. The served name (default: the folder name).
        version: int or None. Load this version instead of the highest.
    """

    def __init__(self, base_path: str, name: str | None = None, version: int | None = None):
        import tensorflow as tf

        from visnet.exporting import latest_version, read_metadata, versions

        self.base_path = os.path.abspath(base_path)
        if not os.path.isdir(self.base_path):
            raise ModelNotFoundError(f"Model base path not found: {base_path}")
        if version is not None and version not in versions(self.base_path):
            raise ModelNotFoundError(f"{base_path} has no version {version} (found: {versions(self.base_path)}).")
        self.path = os.path.join(self.base_path, str(version)) if version else latest_version(self.base_path)
        self.name = name or os.path.basename(self.base_path)
        self.version = int(os.path.basename(self.path))
        self.metadata = read_metadata(self.path)
        self._model = tf.saved_model.load(self.path)
        self._signatures = dict(self._model.signatures)
        self._vocabulary = None

    @property
    def signatures(self) -> list[str]:
        return sorted(self._signatures)

    def signature_defs(self):
        """The SavedModel's SignatureDef protos by name (what GetModelMetadata returns)."""
        from tensorflow.core.protobuf import saved_model_pb2

        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(self.path, "saved_model.pb"), "rb") as handle:
            proto.ParseFromString(handle.read())
        defs = proto.meta_graphs[0].signature_def
        return {name: defs[name] for name in defs if name in self._signatures}

    def input_specs(self, signature: str) -> dict:
        function = self._signature(signature)
        return function.structured_input_signature[1]

    def _signature(self, signature: str):
        if signature not in self._signatures:
            raise SignatureNotFoundError(f"Serving signature key {signature!r} not found in model {self.name} "
                                         f"(available: {', '.join(self.signatures)}).")
        return self._signatures[signature]

    def output_names(self, signature: str) -> list[str]:
        """The output aliases of `signature`, sorted."""
        return sorted(self._signature(signature).structured_outputs)

    def predict(self, inputs: dict, signature: str = "serving_default", output_filter=None) -> dict:
        """Runs `signature` on `inputs` (name -> array-like); returns name -> numpy array.

        Integer inputs are checked against their dtype's range before conversion (TensorFlow would
        wrap 2**32 + 1 to 1 silently), and `word_ids` against the vocabulary (0..size-1, -1 pads).
        """
        import tensorflow as tf

        specs = self.input_specs(signature)
        check_input_names(signature, specs, inputs)
        outputs_known = self.output_names(signature)
        unknown = set(output_filter or ()) - set(outputs_known)
        if unknown:
            raise InvalidInputError(f"output tensor alias not found in signature {signature!r}: {sorted(unknown)} "
                                    f"(outputs: {outputs_known}).")
        tensors = {}
        for key, spec in specs.items():
            value = inputs[key]
            if spec.dtype.is_integer:
                value = integer_array(key, value, spec.dtype.as_numpy_dtype)
                if key == "word_ids" and self.vocabulary() is not None:
                    check_word_ids(value, len(self.vocabulary()))
            try:
                tensor = tf.convert_to_tensor(value, dtype=spec.dtype)
            except (TypeError, ValueError, OverflowError) as error:
                raise InvalidInputError(f"input {key!r} must be {spec.dtype.name}: {error}") from None
            if not spec.shape.is_compatible_with(tensor.shape):
                raise InvalidInputError(f"input {key!r} must have shape {spec.shape}. Received: {tensor.shape}")
            tensors[key] = tensor
        try:
            outputs = self._signature(signature)(**tensors)
        except tf.errors.InvalidArgumentError as error:
            raise InvalidInputError(f"the model could not run on the inputs: {error.message.splitlines()[0]}") from None
        wanted = output_filter or list(outputs)
        return {key: np.asarray(outputs[key].numpy()) for key in wanted}

    def vocabulary(self):
        """The exported vocabulary of a weak-label model (None for the others)."""
        if self._vocabulary is None:
            path = os.path.join(self.path, "assets.extra", "vocabulary.json")
            if os.path.exists(path):
                from visnet.data.text import Vocabulary

                self._vocabulary = Vocabulary.load(path)
        return self._vocabulary


# Input checks ----------------------------------------------------------------------------------
def integer_array(key: str, value, dtype) -> np.ndarray:
    """`value` as a numpy array of the integer `dtype`, refusing what TensorFlow would convert silently:
    values outside the dtype's range (wrapped modulo 2**bits), floats, booleans, strings, null."""
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as error:
        raise InvalidInputError(f"input {key!r} must be a rectangular array of {dtype.name}: {error}") from None
    if array.size == 0:
        return array.astype(dtype)
    if array.dtype.kind in "iu":
        low, high = array.min(), array.max()
    elif array.dtype.kind in "fO" and not isinstance(value, np.ndarray):
        # Python ints beyond int64 come back as float64 or object: look at the items themselves.
        items = np.asarray(value, dtype=object).ravel()
        for item in items:
            if not isinstance(item, (int, np.integer)) or isinstance(item, (bool, np.bool_)):
                raise InvalidInputError(f"input {key!r} must hold integers ({dtype.name}). "
                                        f"Received: {_short(item)} ({type(item).__name__})")
        low, high = min(items), max(items)
    else:
        raise InvalidInputError(f"input {key!r} must hold integers ({dtype.name}). Received {array.dtype} values.")
    for bad in (low, high):
        if not info.min <= int(bad) <= info.max:
            raise InvalidInputError(f"input {key!r} holds {int(bad)}, outside the range of {dtype.name} "
                                    f"[{info.min}, {info.max}].")
    return array.astype(dtype)


def check_word_ids(word_ids: np.ndarray, vocabulary_size: int) -> None:
    """`text_query` ids are vocabulary rows (0..size-1) or -1 (padding): the graph would read anything below
    -1 as padding and fail on ids past the end, so both are refused here with the offending id."""
    bad = word_ids[(word_ids < -1) | (word_ids >= vocabulary_size)]
    if bad.size:
        raise InvalidInputError(f"input 'word_ids' holds {int(bad.flat[0])}, which is not a word id: ids are "
                                f"0..{vocabulary_size - 1} (the vocabulary) and -1 (padding).")


def _short(item, limit: int = 60) -> str:
    text = repr(item)
    return text if len(text) <= limit else text[:limit] + "..."
