"""What walking an image's structure found: where the structure ends, and how it ended."""

from __future__ import annotations

from dataclasses import dataclass

COMPLETE = "complete"  # the format's end was reached; `end` is just past it
BROKEN = "broken"  # the bytes at `end` do not continue the structure
TRUNCATED = "truncated"  # the element that starts at `end` runs past the end of the data
DAMAGED = "damaged"  # the element that starts at `end` is corrupt, so where it ends is unknown


# No element of an image the service accepts (at most 32 MiB) can be longer than this: a
# "chunk" that claims more and runs past the end of the data is not a cut-off chunk.
MAX_ELEMENT = 32 * 1024 * 1024


@dataclass(frozen=True)
class Walk:
    """The result of one format walker.

    ``search_from`` is where the last element whose extent could not be verified starts (a
    chunk, a block, entropy-coded data): a payload hidden behind a damaged image may begin
    anywhere from there on, so that is where the search for payload signatures starts.
    ``problem`` says what was wrong, for error messages; it is empty for a sound image.
    """

    status: str
    end: int
    image_data: bool
    search_from: int = 0
    problem: str = ""
