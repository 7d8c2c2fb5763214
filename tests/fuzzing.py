"""How many hypothesis cases the fuzz tests run: a few thousand in CI, more with `make fuzz`."""

import os


def examples(base: int) -> int:
    # FUZZ_SCALE multiplies the CI budget (make fuzz sets 20); 1 keeps CI within minutes.
    return base * max(1, int(os.environ.get("FUZZ_SCALE", "1")))
