"""What a request to the model server may contain: TensorProtos and REST JSON, checked before any
tensor is built (`serving.grpc_server`, `serving.rest_server`).

Every request is checked before its tensors are built, and every bad one is answered
with a status naming the input and the bad value, never UNKNOWN or a dropped connection (INTERNAL or
500 only for a bug of ours, RESOURCE_EXHAUSTED or 503 if memory runs out all the same):

- gRPC tensors (`check_tensor_proto`, for every input of every signature): the dtype must be the
  signature's (an integer input also takes the other integer dtypes, range-checked); every dimension
  must be >= 0 and the rank the signature's; the declared element count (Python ints: no overflow)
  must be at most `max_elements` per input and the first dimension between 1 and `max_batch`; the
  content must match the shape: `tensor_content` exactly count x itemsize bytes (never for strings),
  or the dtype's value field (`float_val`, `int_val`, `string_val`, ...) exactly `count` values, and
  no other value field. TensorProto's shorthand of fewer values (TF repeats the last one, or zero when
  there is none) is accepted only for 0 or 1 value expanding to at most `max_broadcast_bytes`; any other
  count is refused. The expanded size of all inputs must fit `max_request_bytes`. Only then does
  `tf.make_ndarray` run. Failures are INVALID_ARGUMENT; an unknown model, version or version label is
  NOT_FOUND, an unknown signature FAILED_PRECONDITION, a message over `max_message_bytes` is refused by
  gRPC itself (RESOURCE_EXHAUSTED).
- REST bodies: at most `max_message_bytes` (413); read with a socket timeout (`--rest-timeout`, a
  body shorter than its Content-Length is answered 408 when it expires, 400 when the client closed);
  no chunked bodies (411); UTF-8 JSON nested at most `max_json_depth` levels (deeper bodies are
  refused whether Python's parser gives up, at about 1000 levels, or not); no NaN/Infinity or numbers
  beyond float64; `signature_name` a string, `instances` a non-empty list, `inputs` an object or (one
  input) a value; leaves of the input's type (`{"b64": "..."}` or text for strings, integers -- not
  booleans or floats -- for integer inputs) and the same element, batch and byte limits as gRPC.
  All answered 400 (404 for an unknown model or version, 405 for another method).
- Integers outside the input dtype's range and `word_ids` outside the vocabulary (below -1, padding, or
  past its end) are refused by `ExportedModel.predict` itself, so every path gets that check.
- A client that disconnects mid-request is counted (`server.departed_clients`), without a traceback.

The limits (`Limits`, the defaults below; `--max-batch`, `--max-elements`, `--rest-timeout`):
64 MiB per message or body and per request's expanded inputs, 262,144 (2**18) elements per input,
256 per batch, 1 MiB for a repeated single value, 32 levels of JSON nesting, 30 s REST socket timeout.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass

from visnet.exported import ExportedModel, InvalidInputError, check_input_names

MIB = 1024 * 1024
REST_TIMEOUT = 30.0  # seconds a REST socket may wait for the client (a read or a write)
MAX_RANK = 32  # of an input whose signature does not fix its rank


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (see the module docstring)."""

    max_message_bytes: int = 64 * MIB  # a gRPC message, a REST body
    max_request_bytes: int = 64 * MIB  # all inputs of a request, expanded to arrays
    max_elements: int = 2**18  # elements of one input tensor (262,144)
    max_batch: int = 256  # the first dimension of every input
    max_broadcast_bytes: int = MIB  # a TensorProto's single value repeated over its shape
    max_json_depth: int = 32  # nested arrays/objects in a REST body

    def __post_init__(self):
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1. Received: {name}={value!r}")


DEFAULT_LIMITS = Limits()


def check_batch(key: str, shape: list, limits: Limits) -> None:
    """The first dimension of an input: 1..max_batch."""
    if not shape:
        return  # a scalar: the signature's shape check names it
    if shape[0] == 0:
        raise InvalidInputError(f"input {key!r} is an empty batch (shape {list(shape)}): send at least one item.")
    if shape[0] > limits.max_batch:
        raise InvalidInputError(f"input {key!r} has a batch of {shape[0]}: at most {limits.max_batch} per request.")


# TensorProto checks ------------------------------------------------------------------------------
def _proto_fields():
    """dtype enum -> (value field, bytes per element, values per element), for the dtypes we accept."""
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2 as t

    table = {t.DT_FLOAT: "float_val", t.DT_DOUBLE: "double_val", t.DT_HALF: "half_val", t.DT_BFLOAT16: "half_val",
             t.DT_INT8: "int_val", t.DT_UINT8: "int_val", t.DT_INT16: "int_val", t.DT_UINT16: "int_val",
             t.DT_INT32: "int_val", t.DT_INT64: "int64_val", t.DT_UINT32: "uint32_val", t.DT_UINT64: "uint64_val",
             t.DT_BOOL: "bool_val", t.DT_STRING: "string_val", t.DT_COMPLEX64: "scomplex_val",
             t.DT_COMPLEX128: "dcomplex_val"}
    return {enum: (field, tf.dtypes.as_dtype(enum).size, 2 if field.endswith("complex_val") else 1)
            for enum, field in table.items()}


_FIELDS: dict = {}
_STRUCTURE = {"dtype", "tensor_shape", "version_number"}


def _dtype_name(enum: int) -> str:
    from tensorflow.core.framework import types_pb2

    try:
        return types_pb2.DataType.Name(enum)
    except ValueError:
        return f"dtype {enum}"


def _accepted_dtypes(spec) -> set:
    """The DataType enums a signature input takes: its own, and for an integer input every integer dtype
    (its values are range-checked by ExportedModel.predict)."""
    import tensorflow as tf

    own = spec.dtype.as_datatype_enum
    if not spec.dtype.is_integer:
        return {own}
    return {own} | {enum for enum in _FIELDS if tf.dtypes.as_dtype(enum).is_integer}


def check_tensor_proto(key: str, proto, spec, limits: Limits = DEFAULT_LIMITS) -> int:
    """Checks a request's TensorProto against its signature input `spec` without expanding it; returns the
    bytes it expands to. Raises InvalidInputError naming `key` and the bad value."""
    if not _FIELDS:
        _FIELDS.update(_proto_fields())
    name = _dtype_name(proto.dtype)
    accepted = _accepted_dtypes(spec)
    if proto.dtype not in accepted:
        takes = _dtype_name(spec.dtype.as_datatype_enum) + (" (or another integer dtype)" if len(accepted) > 1 else "")
        raise InvalidInputError(f"input {key!r} has dtype {name}; signature input {key!r} takes {takes}.")
    if proto.tensor_shape.unknown_rank:
        raise InvalidInputError(f"input {key!r} has an unknown rank: a request tensor needs a shape.")
    dims = proto.tensor_shape.dim
    rank = spec.shape.rank
    if (rank is not None and len(dims) != rank) or len(dims) > MAX_RANK:
        raise InvalidInputError(f"input {key!r} has rank {len(dims)}; it must have shape {spec.shape} "
                                f"(rank {rank if rank is not None else f'<= {MAX_RANK}'}).")
    shape = [dim.size for dim in dims]
    for axis, size in enumerate(shape):
        if size < 0:
            raise InvalidInputError(f"input {key!r} has dimension {axis} of size {size}: sizes must be >= 0.")
        if rank is not None and spec.shape[axis] is not None and size != spec.shape[axis]:
            raise InvalidInputError(f"input {key!r} has dimension {axis} of size {size}; it must have shape "
                                    f"{spec.shape}.")
    count = math.prod(shape)  # Python ints: exact, at most MAX_RANK x 63 bits
    if count > limits.max_elements:
        raise InvalidInputError(f"input {key!r} declares shape {shape}, {count} elements: at most "
                                f"{limits.max_elements} per input.")
    check_batch(key, shape, limits)
    field, itemsize, per = _FIELDS[proto.dtype]
    present = {descriptor.name for descriptor, _ in proto.ListFields()}
    stray = sorted(present - _STRUCTURE - {"tensor_content", field})
    if stray:
        raise InvalidInputError(f"input {key!r} is {name} but sets {', '.join(stray)}: its values go in "
                                f"{field} or tensor_content.")
    if "tensor_content" in present:
        if proto.dtype == _string_enum():
            raise InvalidInputError(f"input {key!r} is {name}: strings go in string_val, not tensor_content.")
        if field in present:
            raise InvalidInputError(f"input {key!r} sets both tensor_content and {field}: send one of them.")
        expected = count * itemsize
        if len(proto.tensor_content) != expected:
            raise InvalidInputError(f"input {key!r} has {len(proto.tensor_content)} bytes of tensor_content; "
                                    f"shape {shape} of {name} needs {expected}.")
        return expected
    values = getattr(proto, field)
    sent = len(values)
    if proto.dtype == _string_enum():
        if sent == count:
            return sum(len(value) for value in values)
        expanded = count * (len(values[-1]) if sent else 0)
    else:
        if sent == count * per:
            return count * itemsize
        expanded = count * itemsize
    if sent in (0, per) and sent < count * per:
        if expanded > limits.max_broadcast_bytes:
            raise InvalidInputError(f"input {key!r} declares shape {shape} but sends {sent} {field} value(s); "
                                    f"repeating it would take {expanded} bytes (at most "
                                    f"{limits.max_broadcast_bytes}): send all {count} values.")
        return expanded
    raise InvalidInputError(f"input {key!r} has {sent} {field} values; shape {shape} needs {count * per}"
                            + (" (or a single value to repeat)." if sent < count * per else "."))


def _string_enum() -> int:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DT_STRING


def check_request_bytes(total: int, limits: Limits) -> None:
    """InvalidInputError when a request's inputs expand to more than `max_request_bytes` (gRPC and REST)."""
    if total > limits.max_request_bytes:
        raise InvalidInputError(f"the inputs expand to {total} bytes: at most {limits.max_request_bytes} per request.")


def arrays_from_protos(model: ExportedModel, signature: str, protos, limits: Limits = DEFAULT_LIMITS) -> dict:
    """A Predict request's inputs (alias -> TensorProto) as numpy arrays, each checked before it is expanded."""
    import tensorflow as tf

    specs = model.input_specs(signature)
    check_input_names(signature, specs, protos)
    check_request_bytes(sum(check_tensor_proto(key, protos[key], spec, limits) for key, spec in specs.items()), limits)
    arrays = {}
    for key in specs:
        try:
            arrays[key] = tf.make_ndarray(protos[key])
        except (ValueError, TypeError, OverflowError) as error:  # e.g. int_val 1000 for a DT_INT8
            raise InvalidInputError(f"input {key!r} could not be read as {_dtype_name(protos[key].dtype)}: "
                                    f"{error}") from None
    return arrays


def decode_json_value(value, max_depth: int = DEFAULT_LIMITS.max_json_depth, _depth: int = 1):
    """TF Serving's JSON for binary strings: `{"b64": ...}` becomes bytes, recursively, at most `max_depth`
    levels of arrays/objects deep (InvalidInputError beyond)."""
    if isinstance(value, (list, dict)) and _depth > max_depth:
        raise InvalidInputError(f"the request is nested more than {max_depth} levels deep.")
    if isinstance(value, dict) and set(value) == {"b64"}:
        if not isinstance(value["b64"], str):
            raise InvalidInputError('a {"b64": ...} value must be a base64 string. '
                                    f"Received: {_short(value['b64'])}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError("a {\"b64\": ...} value is not valid base64.") from None
    if isinstance(value, list):
        return [decode_json_value(v, max_depth, _depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: decode_json_value(v, max_depth, _depth + 1) for k, v in value.items()}
    return value


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _json_constant(name: str):
    raise InvalidInputError(f"{name} is not a number: NaN and Infinity are refused.")


def parse_json_body(raw: bytes, max_depth: int = DEFAULT_LIMITS.max_json_depth):
    """A REST body -> its JSON value; InvalidInputError (a 400) for anything that is not UTF-8 JSON nested at
    most `max_depth` levels, without NaN/Infinity."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInputError(f"JSON Parse error: the body is not UTF-8 ({error}).") from None
    try:
        return json.loads(text, parse_constant=_json_constant)
    except RecursionError:  # Python's parser recurses once per level: about 1000 levels
        raise InvalidInputError(f"the request is nested more than {max_depth} levels deep.") from None
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"JSON Parse error: {error}") from None
    except ValueError as error:  # an integer of more than 4300 digits
        raise InvalidInputError(f"JSON Parse error: {error}") from None


def _leaf_kind(spec) -> str:
    dtype = spec.dtype
    if dtype.name == "string":
        return "string"
    if dtype.is_bool:
        return "bool"
    if dtype.is_integer:
        return "integer"
    return "number"


def check_json_input(key: str, value, spec, limits: Limits = DEFAULT_LIMITS) -> int:
    """A decoded REST input (nested lists of leaves) against its signature input: leaf types, element count,
    batch and bytes; returns the bytes. Without recursion (the depth is already bounded)."""
    kind = _leaf_kind(spec)
    if isinstance(value, list):
        check_batch(key, [len(value)], limits)
    count, size, stack = 0, 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        count += 1
        if count > limits.max_elements:
            raise InvalidInputError(f"input {key!r} has more than {limits.max_elements} elements: at most "
                                    f"{limits.max_elements} per input.")
        if kind == "string":
            ok = isinstance(item, (str, bytes))
            size += len(item) if ok else 0
        elif kind == "integer":
            ok = isinstance(item, int) and not isinstance(item, bool)
        elif kind == "bool":
            ok = isinstance(item, bool)
        else:
            ok = isinstance(item, (int, float)) and not isinstance(item, bool)
        if isinstance(item, float) and not math.isfinite(item):
            raise InvalidInputError(f"input {key!r} holds a number out of the float64 range ({item}).")
        if not ok:
            expected = {"string": 'strings (binary as {"b64": ...})', "integer": f"integers ({spec.dtype.name})",
                        "bool": "booleans", "number": f"numbers ({spec.dtype.name})"}[kind]
            raise InvalidInputError(f"input {key!r} must hold {expected}. Received: {_short(item)}")
    return size if kind == "string" else count * spec.dtype.size
