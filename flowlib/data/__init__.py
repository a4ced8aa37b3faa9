"""Dataset indexers (lists of :class:`Sample`: paths + metadata), decoding and prefetching.

Indexers check the official layout and say which folder was expected when a root does
not match; they never decode. :func:`load_sample` decodes one sample via ``flowlib.io``.
"""

from flowlib.data._sample import Sample, load_sample
from flowlib.data.chairs import index_flyingchairs
from flowlib.data.kitti import index_kitti_flow, index_kitti_stereo
from flowlib.data.loader import prefetch
from flowlib.data.middlebury import index_middlebury_flow, index_middlebury_stereo
from flowlib.data.sintel import index_sintel
from flowlib.data.things import index_flyingthings3d

__all__ = [
    "Sample",
    "load_sample",
    "prefetch",
    "index_sintel",
    "index_kitti_flow",
    "index_kitti_stereo",
    "index_middlebury_flow",
    "index_middlebury_stereo",
    "index_flyingchairs",
    "index_flyingthings3d",
]
