"""What the search API does, without HTTP: embed a photo, search, change the gallery, save it.

    service = SearchService(ApiSettings(model="models/shop", index="index/shop"))
    service.search(jpeg_bytes, k=10)   # {"results": [...], "took_ms": ...}

Errors are `serving.requests.ApiError` (an HTTP status and a message naming the bad value).
Answers never carry server paths: an item's photo is `image_url` (`/items/{id}/image`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import os
import threading
import time

from serving.budget import Busy, CostLane, LaneFailed
from serving.requests import MAX_K, MAX_QUERY_TEXT, ApiError, check_id, item_fields, parse_k
from serving.settings import ApiSettings
from serving.uploads import UploadError, decode_for_model, prepare, read_header

#: Images whose decode makes at most this many pixels are checked on the event loop itself (< 1 ms).
INLINE_PIXELS = 250_000


class SearchService:
    """The endpoints' work: embed, search, change the gallery, save it."""

    def __init__(self, settings: ApiSettings, predictor=None, gallery=None):
        from visnet.exporting import latest_version, read_metadata
        from visnet.index import Gallery
        from visnet.index.storage import MANIFEST

        self.settings = settings
        self.metadata = read_metadata(latest_version(settings.model))
        self.model_info = {"name": self.metadata["name"], "version": str(self.metadata["version"])}
        spec = self.metadata.get("image_spec") or {}
        self.input_size = (int(spec["height"]), int(spec["width"])) if "height" in spec else None
        if predictor is None:
            if settings.tf_serving:
                from serving.clients import GrpcClient

                predictor = GrpcClient(settings.tf_serving, self.metadata["name"], version=self.metadata["version"])
            else:
                from visnet.exported import ExportedModel

                predictor = ExportedModel(settings.model)
        if settings.batch_size > 1:
            from serving.batching import BatchingPredictor

            predictor = BatchingPredictor(predictor, settings.batch_size, settings.batch_timeout_ms)
        self.predictor = predictor
        if gallery is None:
            if os.path.exists(os.path.join(settings.index, MANIFEST)):
                gallery = Gallery.load(settings.index, expected_model=self.model_info)
            elif settings.backend == "milvus":  # Milvus Lite beside the catalogue, unless a URI says otherwise
                gallery = Gallery({"name": "milvus", "uri": os.path.join(settings.index, "milvus.db")})
            else:
                gallery = Gallery(settings.backend)
        self.gallery = gallery
        self.vocabulary = None
        if "text_query" in self.metadata["signatures"]:
            from visnet.data.text import Vocabulary

            version_dir = latest_version(settings.model)
            self.vocabulary = Vocabulary.load(os.path.join(version_dir, "assets.extra", "vocabulary.json"))
        self.uploads = os.path.join(settings.index, "uploads")
        self.large_images = CostLane(settings.large_image_cpu)
        self._write_lock = threading.Lock()
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self._saver = None
        if settings.save_interval > 0:
            self._saver = threading.Thread(target=self._save_loop, daemon=True, name="gallery-saver")
            self._saver.start()

    # Reading -----------------------------------------------------------------------------------
    def check_k(self, k) -> int:
        return parse_k(k, self.settings.default_k)

    @staticmethod
    @contextlib.contextmanager
    def _upload_errors(name: str = "the upload"):
        """What can go wrong between an upload and its embedding, as the ApiError answered for it."""
        from visnet.exported import InvalidInputError

        try:
            yield
        except UploadError as error:
            raise ApiError(error.status, str(error)) from None
        except Busy as busy:
            raise ApiError(503, str(busy), {"Retry-After": str(max(1, math.ceil(busy.retry_after)))}) from None
        except LaneFailed as error:
            raise ApiError(413, str(error)) from None
        except InvalidInputError as error:  # decodable by PIL, not by the model's decoder
            raise ApiError(422, f"The model could not decode {name}: {error}") from None

    def _header(self, data: bytes, name: str):
        header = read_header(data, self.settings.max_pixels, name)
        return header, header.cost(self.input_size or (header.height, header.width))

    def model_bytes(self, data: bytes, name: str = "the upload") -> bytes:
        """The upload checked and decoded once, at a bounded cost (`serving.uploads`, `serving.budget`)."""
        with self._upload_errors(name):
            header, cost = self._header(data, name)
            if cost > self.settings.large_image_pixels:
                return self.large_images.run(decode_for_model, data, self.settings.max_pixels, self.input_size, name)
            return prepare(header, self.input_size)

    def _vector(self, vectors, valid, name: str):
        if not valid[0]:
            raise ApiError(422, f"The model could not use {name} (damaged or over its pixel limit).")
        return vectors[0]

    def embed(self, data: bytes, name: str = "the upload"):
        """(the upload as sent, its embedding), in the calling thread (writes)."""
        with self._upload_errors(name):
            vectors, valid = self.predictor.embed([self.model_bytes(data, name)])
        return data, self._vector(vectors, valid, name)

    async def embed_async(self, data: bytes, name: str = "the upload"):
        """The embedding of an upload, from the event loop without tying up a thread per request: a small
        image is checked inline (under a millisecond), a middling one in a worker thread, a large one in
        the large-image lane; the model call is awaited on the batcher."""
        import asyncio

        with self._upload_errors(name):
            header, cost = self._header(data, name)
            if cost > self.settings.large_image_pixels:
                model_data = await asyncio.wrap_future(
                    self.large_images.submit(decode_for_model, data, self.settings.max_pixels, self.input_size, name))
            elif cost > INLINE_PIXELS:
                model_data = await asyncio.to_thread(prepare, header, self.input_size)
            else:
                model_data = prepare(header, self.input_size)
            if hasattr(self.predictor, "submit"):
                vectors, valid = await asyncio.wrap_future(self.predictor.submit([model_data]))
            else:
                vectors, valid = await asyncio.to_thread(self.predictor.embed, [model_data])
        return self._vector(vectors, valid, name)

    def search(self, data: bytes, k) -> dict:
        k = self.check_k(k)
        begin = time.perf_counter()
        _, vector = self.embed(data)
        return self._answer(vector, k, begin)

    async def search_async(self, data: bytes, k) -> dict:
        """`search` for the event loop (see `embed_async`); the index search itself is a millisecond."""
        k = self.check_k(k)
        begin = time.perf_counter()
        return self._answer(await self.embed_async(data), k, begin)

    def _answer(self, vector, k: int, begin: float) -> dict:
        results = self.gallery.search(vector, k, self.settings.query_expansion)
        return {"results": [self.present(r) for r in results], "took_ms": round(1000 * (time.perf_counter() - begin), 2)}

    def search_text(self, text, k) -> dict:
        if self.vocabulary is None:
            raise ApiError(404, f"Text search needs a weak-label model; {self.metadata['name']} is a "
                                f"{self.metadata['arch']} model.")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(422, "text must be a non-empty string.")
        if len(text) > MAX_QUERY_TEXT:
            raise ApiError(422, f"text must be at most {MAX_QUERY_TEXT} characters. Received: {len(text):,}")
        k = self.check_k(k)
        begin = time.perf_counter()
        ids = self.vocabulary.bag(text)
        if not len(ids):
            raise ApiError(422, f"No word of {text[:80]!r} is in the model's vocabulary "
                                f"(tokens: {self.vocabulary.tokenizer(text)[:20]}).")
        query = self.predictor.text_query([list(map(int, ids))])[0]
        words = [self.vocabulary.words[i] for i in ids]
        if len(self.gallery) == 0 or not query.any():
            return {"results": [], "words": words, "took_ms": 0.0}
        # q.z is the summed word score: searching with q/|q| ranks by it; scores are put back on its scale.
        norm = float((query**2).sum() ** 0.5)
        results = self.gallery.search(query / norm, k)
        for result in results:
            result["score"] = result["score"] * norm
        return {"results": [self.present(r) for r in results], "words": words,
                "took_ms": round(1000 * (time.perf_counter() - begin), 2)}

    def item(self, id: str) -> dict:
        record = self.gallery.get(id)
        if record is None:
            raise ApiError(404, f"No item with id {id!r}.")
        return self.present(record)

    def image_path(self, id: str) -> str:
        record = self.gallery.get(id)
        if record is None:
            raise ApiError(404, f"No item with id {id!r}.")
        path = record.get("image")
        if not path or not os.path.isfile(path):
            raise ApiError(404, f"Item {id!r} has no image file on this server.")
        from serving.uploads import known_format

        with open(path, "rb") as handle:  # only photos leave the server, whatever a catalogue names
            if known_format(handle.read(16)) is None:
                raise ApiError(404, f"Item {id!r} has no image file on this server.")
        return path

    @staticmethod
    def present(record: dict) -> dict:
        """A record as answered: ids and URLs, never the server's file paths."""
        from urllib.parse import quote

        out = {key: value for key, value in record.items() if key != "image"}
        out["image_url"] = f"/items/{quote(record['id'], safe='/')}/image" if record.get("image") else None
        return out

    # Writing -----------------------------------------------------------------------------------
    def check_key(self, key: str | None) -> None:
        expected = self.settings.api_key
        if not expected:
            raise ApiError(403, "Writes are disabled: start the service with --api-key or VISNET_API_KEY set.")
        if not key:
            raise ApiError(401, "This request changes the catalogue: send the API key in an X-API-Key header.")
        if not hmac.compare_digest(key.encode(), expected.encode()):
            raise ApiError(403, "The API key is wrong.")

    def _store_upload(self, data: bytes) -> tuple[str, bool]:
        """Writes a checked upload under the index's `uploads/`, named by its content: (path, created)."""
        from serving.uploads import known_format
        from visnet.files import write_file

        os.makedirs(self.uploads, exist_ok=True)
        extension = (known_format(data) or "png").lower()
        path = os.path.join(self.uploads, f"{hashlib.sha256(data).hexdigest()[:32]}.{extension}")
        if os.path.exists(path):
            return path, False
        write_file(path, data)
        return path, True

    def _write(self, change, data: bytes | None, values: dict) -> None:
        """Stores the upload (if any), applies `change(values)`, saves; a refused change leaves no file behind."""
        path, created = self._store_upload(data) if data is not None else (None, False)
        if path:
            values["image"] = path
        try:
            change(values)
        except (ValueError, TypeError) as error:
            if created:
                os.remove(path)
            raise ApiError(422, str(error)) from None
        except BaseException:
            if created:
                os.remove(path)
            raise
        self._save()

    def _save(self) -> None:
        """Called after each write: saves now, or marks the gallery for the next periodic save."""
        if self._saver is None:
            self.gallery.save(self.settings.index, model=self.model_info)
        else:
            self._dirty.set()

    def _save_loop(self) -> None:
        while not self._closed.wait(self.settings.save_interval):
            self.flush()

    def flush(self) -> None:
        """Saves pending writes (a no-op when nothing changed since the last save)."""
        if self._dirty.is_set():
            self._dirty.clear()
            self.gallery.save(self.settings.index, model=self.model_info)

    def close(self) -> None:
        """Stops the periodic saver, the batcher and the large-image lane, and saves what is pending."""
        self._closed.set()
        self.flush()
        self.large_images.close()
        if hasattr(self.predictor, "close"):
            self.predictor.close()

    def add(self, fields: dict, data: bytes | None) -> dict:
        id = check_id(fields.get("id"))
        values = item_fields(fields)
        if data is None:
            raise ApiError(422, "A new item needs an image (multipart field 'image' or JSON 'image_b64').")
        data, vector = self.embed(data)
        with self._write_lock:
            if id in self.gallery:
                raise ApiError(409, f"An item with id {id!r} exists; PUT /items/{id} changes it.")
            self._write(lambda values: self.gallery.add({"id": id, **values}, vector), data, values)
        return self.item(id)

    def update(self, id: str, fields: dict, data: bytes | None) -> dict:
        if fields.get("id", id) != id:
            raise ApiError(422, f"The id in the body ({fields['id']!r}) differs from the URL's ({id!r}).")
        values = item_fields(fields)
        if not values and data is None:
            raise ApiError(422, "Nothing to change: send an image and/or label, text, labels.")
        vector = None
        if data is not None:
            data, vector = self.embed(data)
        with self._write_lock:
            if id not in self.gallery:
                raise ApiError(404, f"No item with id {id!r}.")
            self._write(lambda values: self.gallery.update(id, vector, **values), data, values)
        return self.item(id)

    def remove(self, id: str) -> dict:
        with self._write_lock:
            if id not in self.gallery:
                raise ApiError(404, f"No item with id {id!r}.")
            self.gallery.remove(id)
            self._save()
        return {"deleted": id}

    def health(self) -> dict:
        return {"status": "ok", "model": self.model_info, "arch": self.metadata["arch"], "items": len(self.gallery),
                "text_search": self.vocabulary is not None, "max_k": MAX_K, "default_k": self.settings.default_k,
                "embeddings": "tf-serving " + self.settings.tf_serving if self.settings.tf_serving else "in-process",
                "unsaved_writes": self._dirty.is_set()}
