"""Keras layers of visnet's architectures (all registered and serializable)."""

from visnet.layers.capsules import CapsuleLength, ClassCapsules, PrimaryCapsules, squash

__all__ = ["CapsuleLength", "ClassCapsules", "PrimaryCapsules", "squash"]
