"""Online triplet mining inside a batch.

A miner looks at the batch's distance matrix and labels and returns a (B, B, B) mask: entry
[a, p, n] is 1 when the triplet (anchor a, positive p, negative n) is used. `mine()` turns the
mask into index tuples, so miners can be checked alone on hand-built embeddings.

| name         | triplets kept                                                                      |
|--------------|------------------------------------------------------------------------------------|
| `batch-all`  | every valid triplet (Hermans et al. 2017; the loss averages the non-zero ones)     |
| `batch-hard` | per anchor, its farthest positive and its nearest negative (Hermans et al. 2017)   |
| `semi-hard`  | per (anchor, positive), the nearest negative farther than the positive; when there |
|              | is none, the farthest negative (Schroff et al. 2015, FaceNet)                       |
| `top-k`      | the `top_k` fraction of valid triplets with the largest loss (the Navee report)   |

Anchors without a positive (a class with one image in the batch) or without a negative are
skipped, so small last batches and singleton classes are handled.
"""

from __future__ import annotations

from keras import ops

from visnet.registry import Registry

miners = Registry("miner")


def _masks(labels):
    labels = ops.reshape(labels, (-1,))
    same = ops.equal(ops.expand_dims(labels, 0), ops.expand_dims(labels, 1))
    size = ops.shape(labels)[0]
    not_self = ops.logical_not(ops.cast(ops.eye(size), "bool"))
    positive = ops.logical_and(same, not_self)  # [a, p]
    negative = ops.logical_not(same)  # [a, n]
    return positive, negative


def valid_triplets(labels):
    """Boolean (B, B, B): p is another image of a's class, n an image of another class."""
    positive, negative = _masks(labels)
    return ops.logical_and(ops.expand_dims(positive, 2), ops.expand_dims(negative, 1))


def triplet_losses(distances, margin: float):
    """(B, B, B) loss of every triplet: d(a, p) - d(a, n) + margin, before the hinge."""
    return ops.expand_dims(distances, 2) - ops.expand_dims(distances, 1) + margin


@miners.register("batch-all")
def batch_all(distances, labels, margin: float = 0.2, top_k: float = 0.2):
    return ops.cast(valid_triplets(labels), distances.dtype)


@miners.register("batch-hard")
def batch_hard(distances, labels, margin: float = 0.2, top_k: float = 0.2):
    positive, negative = _masks(labels)
    big = ops.max(distances) + 1.0
    hardest_p = ops.argmax(ops.where(positive, distances, -1.0), axis=1)
    hardest_n = ops.argmin(ops.where(negative, distances, big), axis=1)
    size = ops.shape(distances)[0]
    has_both = ops.logical_and(ops.any(positive, axis=1), ops.any(negative, axis=1))
    p_hot = ops.one_hot(hardest_p, size, dtype=distances.dtype)
    n_hot = ops.one_hot(hardest_n, size, dtype=distances.dtype)
    mask = ops.expand_dims(p_hot, 2) * ops.expand_dims(n_hot, 1)
    return mask * ops.reshape(ops.cast(has_both, distances.dtype), (-1, 1, 1))


@miners.register("semi-hard")
def semi_hard(distances, labels, margin: float = 0.2, top_k: float = 0.2):
    positive, negative = _masks(labels)
    d_ap = ops.expand_dims(distances, 2)  # [a, p, 1]
    d_an = ops.expand_dims(distances, 1)  # [a, 1, n]
    neg = ops.expand_dims(negative, 1)  # [a, 1, n]
    farther = ops.logical_and(neg, ops.greater(d_an, d_ap))  # [a, p, n]
    big = ops.max(distances) + 1.0
    nearest_farther = ops.argmin(ops.where(farther, d_an, big), axis=2)  # [a, p]
    farthest = ops.argmax(ops.where(neg, d_an, -1.0) + ops.zeros_like(d_ap), axis=2)  # fallback
    has_farther = ops.any(farther, axis=2)
    chosen = ops.where(has_farther, nearest_farther, farthest)
    size = ops.shape(distances)[0]
    n_hot = ops.one_hot(chosen, size, dtype=distances.dtype)  # [a, p, n]
    usable = ops.logical_and(positive, ops.any(negative, axis=1, keepdims=True))
    return n_hot * ops.expand_dims(ops.cast(usable, distances.dtype), 2)


@miners.register("top-k")
def top_k_largest(distances, labels, margin: float = 0.2, top_k: float = 0.2):
    valid = valid_triplets(labels)
    losses = ops.reshape(triplet_losses(distances, margin), (-1,))
    flat_valid = ops.reshape(valid, (-1,))
    count = ops.sum(ops.cast(flat_valid, "int32"))
    # ceil(top_k * count), with a little slack: in float32, 0.3 * 110 is 33.000002.
    keep = ops.maximum(ops.cast(ops.ceil(top_k * ops.cast(count, "float32") - 1e-3), "int32"), 1)
    # Rank valid triplets by loss (largest first); invalid ones sink to the end.
    ranked = ops.where(flat_valid, losses, ops.min(losses) - 1.0)
    order = ops.argsort(-ranked)
    rank = ops.argsort(order)
    kept = ops.logical_and(flat_valid, ops.less(rank, keep))
    return ops.reshape(ops.cast(kept, distances.dtype), ops.shape(valid))


def mine(miner: str, embeddings, labels, margin: float = 0.2, distance: str = "euclidean", top_k: float = 0.2):
    """Index tuples (anchors, positives, negatives) a miner picks for a batch, sorted."""
    from visnet.losses.distances import pairwise_distances

    embeddings = ops.convert_to_tensor(embeddings, "float32")
    labels = ops.convert_to_tensor(labels)
    mask = miners.lookup(miner)(pairwise_distances(embeddings, distance=distance), labels, margin, top_k)
    a, p, n = ops.nonzero(mask)
    return ops.convert_to_numpy(a), ops.convert_to_numpy(p), ops.convert_to_numpy(n)
