"""Peak memory of every process started with this folder on PYTHONPATH (bench/gpu_check.py puts it
there for the training runs' torchrun ranks): when SEKD_PEAK_DIR is set, at exit each process that
imported torch appends {"pid", "cuda_peak_mib", "rss_peak_mib"} to SEKD_PEAK_DIR/<pid>.json."""

import atexit
import json
import os
import sys


def _record() -> None:
    folder = os.environ.get("SEKD_PEAK_DIR")
    torch = sys.modules.get("torch")
    if not folder or torch is None:
        return
    cuda = 0.0
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            cuda = torch.cuda.max_memory_allocated() / 2**20
    except Exception:  # a probe must never fail the process it measures
        cuda = -1.0
    rss = 0.0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1]) / 1024
    except OSError:
        pass
    record = {"pid": os.getpid(), "cuda_peak_mib": cuda, "rss_peak_mib": rss}
    with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as f:
        json.dump(record, f)


atexit.register(_record)
