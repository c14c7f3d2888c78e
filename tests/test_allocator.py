"""The allocator tuning: freed frame-sized blocks are reused, not faulted in afresh."""

from __future__ import annotations

import subprocess
import sys

# Blocks of 4 to 11 MB, as frames of changing size, allocated, filled and freed in turn; the
# page faults they cost are printed.
CHURN = """
import resource, sys
from engine.allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for n in range(40):
    block = b"\\x01" * ((4 + n % 8) << 20)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True,
                            timeout=120, check=True)
    return int(result.stdout)


def test_freed_frames_are_reused_instead_of_faulted_in_again():
    plain, tuned = page_faults("plain"), page_faults("tuned")
    # Untuned, every block is mapped afresh and faults its pages in again (about 19,000
    # faults here, with transparent huge pages); tuned, the heap grows once (about 2,800).
    assert tuned * 3 < plain, (tuned, plain)
