"""Stubs of the compiled core (cpp/src): kernels over validated segments, see hierfed._kernels.

Each kernel is bound under the name and with the arguments of its numpy reference in
``hierfed/_kernels/numpy/<family>.py`` (the kernel contract, written once there); the binding
takes every argument, ``n_threads`` included, where the reference gives some a default.
"""

from hierfed._kernels.numpy.chacha20 import chacha20_keystream as chacha20_keystream
from hierfed._kernels.numpy.clipping import arc_matrix as arc_matrix
from hierfed._kernels.numpy.clipping import clip_by_l2 as clip_by_l2
from hierfed._kernels.numpy.clipping import clip_matrix as clip_matrix
from hierfed._kernels.numpy.clipping import l2_sq_norms as l2_sq_norms
from hierfed._kernels.numpy.coordinatewise import mean as mean
from hierfed._kernels.numpy.coordinatewise import mean_around_median as mean_around_median
from hierfed._kernels.numpy.coordinatewise import mean_matrix as mean_matrix
from hierfed._kernels.numpy.coordinatewise import median as median
from hierfed._kernels.numpy.coordinatewise import median_matrix as median_matrix
from hierfed._kernels.numpy.coordinatewise import trimmed_mean as trimmed_mean
from hierfed._kernels.numpy.coordinatewise import trimmed_mean_matrix as trimmed_mean_matrix
from hierfed._kernels.numpy.distances import monna_matrix as monna_matrix
from hierfed._kernels.numpy.distances import pairwise_sq_distances as pairwise_sq_distances
from hierfed._kernels.numpy.distances import sq_distances_to as sq_distances_to
from hierfed._kernels.numpy.hadamard import walsh_hadamard as walsh_hadamard
from hierfed._kernels.numpy.masks import apply_masks as apply_masks
from hierfed._kernels.numpy.mixing import bucket_matrix as bucket_matrix
from hierfed._kernels.numpy.mixing import bucket_means as bucket_means
from hierfed._kernels.numpy.mixing import mix_rows as mix_rows
from hierfed._kernels.numpy.noise import chacha20_noise as chacha20_noise
from hierfed._kernels.numpy.noise import discrete_gaussian as discrete_gaussian

def simd() -> str:
    """The instruction-set build in use: ``avx512``, ``avx2`` or ``baseline``."""
