"""Keras layers of visnet's architectures (all registered and serializable)."""

from visnet.layers.capsules import CapsuleLength, ClassCapsules, PrimaryCapsules, squash
from visnet.layers.cosine import CosineClassifier

__all__ = ["CapsuleLength", "ClassCapsules", "CosineClassifier", "PrimaryCapsules", "squash"]
