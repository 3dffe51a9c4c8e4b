"""What a decode really holds, the oracle for the gateway's count (DecodePlan.memory): how far a
fresh interpreter's peak RSS (VmHWM, reset through clear_refs) rises above its RSS while
gateway.decode.decode_rgb decodes the photo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.paths import PROJECT_ROOT

_MEASURE = """
import sys
from gateway.decode import decode_rgb
def kb(field):
    status = open('/proc/self/status').read().splitlines()
    return next(int(l.split()[1]) for l in status if l.startswith(field + ':'))
data = sys.stdin.buffer.read()
if len(sys.argv) > 1:  # the codec's libraries loaded first, so they are not counted
    decode_rgb(open(sys.argv[1], 'rb').read(), 40_000_000)
open('/proc/self/clear_refs', 'w').write('5')
before = kb('VmRSS')
decode_rgb(data, 40_000_000)
print((kb('VmHWM') - before) * 1024)
"""


def decode_peak_bytes(data: bytes, warm_up: Path | None = None) -> int:
    """The bytes decoding `data` adds at its peak; `warm_up`: a small photo of the same codec
    decoded first."""
    command = [sys.executable, "-c", _MEASURE, *([str(warm_up)] if warm_up else [])]
    done = subprocess.run(
        command, input=data, capture_output=True, timeout=120, check=True, cwd=PROJECT_ROOT
    )
    return int(done.stdout)
