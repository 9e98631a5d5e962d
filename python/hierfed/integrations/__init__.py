"""Integrations with other frameworks; each module imports its framework only when used.

- :mod:`hierfed.integrations.torch`: a model's parameters or state_dict to one vector and
  back (extra ``torch``). Every hierfed rule also takes torch tensors directly.
- :mod:`hierfed.integrations.flower`: :class:`~hierfed.integrations.flower.HierarchicalStrategy`,
  a Flower strategy running hierfed's baskets and two layers (extra ``flower``).
"""

from ._layout import ArrayLayout

__all__ = ["ArrayLayout"]
