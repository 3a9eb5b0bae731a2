"""TensorFlow's CPU memory in a serving process: returned to the system after each request.

TensorFlow's x86 wheels run CPU ops through oneDNN, whose allocator keeps every
allocation of 256 KB or more in a pool (a BFC allocator) that only grows. A server
that once decodes a large image holds that memory for good, and a pool grown by
many image sizes fragments: measured with kerasflow's fuzz suite, 21,004 requests
grew ``kerasflow serve`` by 1,132 MB, three requests that each decoded a 16-36
megapixel JPEG by 1,090 MB of it (the 740-byte file of one declared 9000 x 4000
pixels). With ``TF_ONEDNN_USE_SYSTEM_ALLOCATOR=true`` the same ops allocate with
``malloc``, large buffers are unmapped when freed, and that request leaves the
server where it was (+0 MB after its first call, measured in-process).

oneDNN's kernels stay on; only where their memory comes from changes. TensorFlow
reads the variable once, at the first allocation, so it is set before a model is
loaded; a value the user set (``false`` keeps the pool) is left alone.

The cost, measured side by side (``benchmarks/serving_allocator.py``, two servers
taking turns, p50): the digits model 1.01x and MobileNetV2 224 with one JPEG 1.02x
the pool's latency, MobileNetV2 with a batch of 16 JPEGs 1.27x (172 -> 218 ms:
buffers over glibc's 32 MB mmap ceiling are mapped and faulted in for every
request), the 36 MP JPEG 2-3x (185-400 -> 536-556 ms), which the pool served while
keeping 1,014 MB against 3.9 MB. ``kerasflow serve --memory-pool`` keeps the pool.
"""

from __future__ import annotations

import logging
import os
import sys

ENV = "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"
log = logging.getLogger(__name__)


def release_memory_after_requests(pool: bool = False) -> bool:
    """Make TensorFlow allocate with the system's ``malloc`` in this process (see the module).

    Call it before TensorFlow allocates anything (before a model is loaded).

    Args:
        pool: keep oneDNN's pool instead (``kerasflow serve --memory-pool``): faster for large
            batches of large models, but the process keeps the peak memory of any request.
            Without it, a value the user set in the environment is left alone.

    Returns:
        Whether memory is returned after requests (the setting is ``true``).
    """
    if pool:
        os.environ[ENV] = "false"
    else:
        os.environ.setdefault(ENV, "true")
    on = os.environ[ENV].strip().lower() in ("1", "true")
    if "tensorflow" in sys.modules:
        log.debug("%s set after TensorFlow was imported: effective if nothing was allocated", ENV)
    return on
