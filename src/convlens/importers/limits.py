"""How much a model file may unpack to, decided from its size before anything is unpacked.

Weights are float noise and hardly compress (a .keras or .pt2 unpacks to about its own size), so
a file that declares many times its size in members or datasets is a bomb, not a model.
"""

MAX_MODEL_BYTES = 2 * 2**30  # the largest model convlens opens: VGG16's weights are 0.55 GB
SLACK_BYTES = 64 * 2**20  # room for configs and programs, and for small files that compress well
MAX_RATIO = 20  # unpacked bytes per byte of file, past the slack


def unpacked_limit(file_bytes: int) -> int:
    """Return how many bytes a model file of `file_bytes` may unpack to."""
    return min(MAX_MODEL_BYTES, SLACK_BYTES + MAX_RATIO * file_bytes)
