"""``python -m kerasflow.serving.convert JOB OUT FORMAT QUANTIZE``: one conversion in its own process.

:func:`kerasflow.serving.formats.export_formats` writes ``JOB/model.keras``,
``JOB/job.json`` (the contract and the data section) and, for int8,
``JOB/calibration.npy``, then runs this once per artefact, so the
converter's per-call memory (tensorflow/tensorflow#122598) is returned to
the system after each. Errors print ``Error: ...`` on stderr and exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    import numpy as np

    from kerasflow.config import DataConfig
    from kerasflow.errors import KerasflowError
    from kerasflow.serving.portable import export_portable
    from kerasflow.tracking import model_registry

    job, out, fmt, quantize = Path(argv[0]), Path(argv[1]), argv[2], argv[3]
    try:
        spec = json.loads((job / "job.json").read_text())
        model = model_registry.load_model(str(job / "model.keras"))
        calibration = job / "calibration.npy"
        pixels = np.load(calibration) if calibration.is_file() else None
        export_portable(
            model, out, DataConfig(**spec["data"]), spec["contract"], fmt, quantize, pixels
        )
    except KerasflowError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
