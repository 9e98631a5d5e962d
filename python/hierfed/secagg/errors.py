"""The error of an aborted secure-aggregation round."""

from __future__ import annotations

__all__ = ["SecAggError"]


class SecAggError(ValueError):
    """The round cannot finish correctly and securely (it is aborted, with no output)."""
