"""Losses for metric learning, in `keras.ops`, registered and serializable.

`visnet.losses.get("triplet", margin=0.2, mining="semi-hard")`; names: `triplet`, `hinge`
(VisNet), `contrastive`, `prototypical`, `capsule-margin`, `normsoftmax` (needs the
`CosineClassifier` head that `visnet.train` adds for it), `sampled-softmax` (over the logits of
the `WordScores` head of the weak-label image-text model).
"""

from visnet.losses.contrastive import ContrastiveLoss
from visnet.losses.margin import CapsuleMarginLoss
from visnet.losses.mining import mine, miners
from visnet.losses.normsoftmax import NormSoftmaxLoss
from visnet.losses.prototypical import PrototypicalLoss
from visnet.losses.sampled_softmax import SampledSoftmaxLoss
from visnet.losses.triplet import MININGS, HingeLoss, TripletLoss
from visnet.registry import Registry

losses = Registry("loss")
losses.register("triplet")(TripletLoss)
losses.register("hinge")(HingeLoss)
losses.register("contrastive")(ContrastiveLoss)
losses.register("prototypical")(PrototypicalLoss)
losses.register("capsule-margin")(CapsuleMarginLoss)
losses.register("normsoftmax")(NormSoftmaxLoss)
losses.register("sampled-softmax")(SampledSoftmaxLoss)
get = losses.get

__all__ = [
    "MININGS", "CapsuleMarginLoss", "ContrastiveLoss", "HingeLoss", "NormSoftmaxLoss", "PrototypicalLoss", "SampledSoftmaxLoss",
    "TripletLoss", "get",
    "losses", "mine", "miners",
]
