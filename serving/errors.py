"""Errors of the serving clients and models, one per failure a caller handles differently."""

from __future__ import annotations


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
