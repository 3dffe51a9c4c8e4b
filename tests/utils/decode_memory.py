"""What a decode really holds, the oracle for the gateway's count (DecodePlan.memory): how far a
fresh interpreter's peak RSS (VmHWM, reset through clear_refs) rises above its RSS while
gateway.images.decode.decode_rgb decodes the photo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.paths import PROJECT_ROOT

_MEASURE = """
import sys
from gateway.images.decode import decode_rgb
def kb(field):
    status = open('/proc/self/status').read().splitlines()
    return next(int(l.split()[1]) for l in status if l.startswith(field + ':'))
data = sys.stdin.buffer.read()
min_side = int(sys.argv[1]) if sys.argv[1] else None
if len(sys.argv) > 2:  # the codec's libraries loaded first, so they are not counted
    decode_rgb(open(sys.argv[2], 'rb').read(), 40_000_000)
open('/proc/self/clear_refs', 'w').write('5')
before = kb('VmRSS')
decode_rgb(data, 40_000_000, min_side)
print((kb('VmHWM') - before) * 1024)
"""


def decode_peak_bytes(data: bytes, warm_up: Path | None = None, min_side: int | None = None) -> int:
    """The bytes decoding `data` adds at its peak (a JPEG reduced to `min_side`, as
    plan_decode's); `warm_up`: a small photo of the same codec decoded first."""
    side = "" if min_side is None else str(min_side)
    command = [sys.executable, "-c", _MEASURE, side, *([str(warm_up)] if warm_up else [])]
    done = subprocess.run(
        command, input=data, capture_output=True, timeout=120, check=True, cwd=PROJECT_ROOT
    )
    return int(done.stdout)
