"""``hierfed simulate``: a hierarchical federation on real data, under attack.

:mod:`~hierfed.simulation.datasets` (data and the non-IID split),
:mod:`~hierfed.simulation.models` (numpy models, local SGD),
:mod:`~hierfed.simulation.attacks` (Byzantine attacks),
:mod:`~hierfed.simulation.runner` (one run of one setup),
:mod:`~hierfed.simulation.study` (a run or the comparison, as results),
:mod:`~hierfed.simulation.report` (table, ``results.json``, ``accuracy.png``).
scikit-learn, matplotlib and rich are imported only where used (extra ``simulate``).
"""

from .config import SimulationConfig
from .runner import RunResult, Simulation

__all__ = ["RunResult", "Simulation", "SimulationConfig"]
