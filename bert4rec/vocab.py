"""The token layout every part of the project shares, stated once.

    0            padding (never a title, never attended to)
    1 .. N       the catalogue's N titles, most popular first
    N + 1        MASK: the title to predict
    N + 2        reserved: the original design's third special token, never an input or an output

So the embedding and output tables have N + 3 rows, and only 1..N can ever be a target, a hit or
a recommendation. Plain Python, so that the store side and the network can both import it.
"""

from __future__ import annotations

PAD_INDEX = 0
NUM_SPECIAL_TOKENS = 3  # padding, MASK, reserved


def vocab_size(num_items: int) -> int:
    return num_items + NUM_SPECIAL_TOKENS


def mask_index(num_items: int) -> int:
    return num_items + 1


def reserved_index(num_items: int) -> int:
    return num_items + 2


def title_slice(num_items: int) -> slice:
    """The rows of a [vocab] table that are titles: 1..N."""
    return slice(1, num_items + 1)
