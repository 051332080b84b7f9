"""Keras layers of visnet's architectures (all registered and serializable)."""

from visnet.layers.capsules import CapsuleLength, ClassCapsules, PrimaryCapsules, squash
from visnet.layers.cosine import CosineClassifier
from visnet.layers.hog import HOG
from visnet.layers.words import WordScores

__all__ = ["CapsuleLength", "ClassCapsules", "CosineClassifier", "HOG", "PrimaryCapsules", "WordScores", "squash"]
