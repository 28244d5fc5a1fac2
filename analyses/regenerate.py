"""Execute the notebooks in analyses/ top to bottom and save them with their outputs.

    python analyses/regenerate.py                       # every notebook
    python analyses/regenerate.py train_tiny23.ipynb    # only these

The saved outputs are exactly what a run produces: each notebook runs in a fresh kernel with
analyses/ as its working folder, and a notebook that raises is not saved (the command exits 1).
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent


def regenerate(path: Path) -> float:
    """Execute one notebook in place; returns the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    nb.nbformat_minor = max(nb.nbformat_minor, 5)  # cells have ids from nbformat 4.5
    for cell in nb.cells:
        cell.setdefault("id", uuid.uuid4().hex[:8])
    start = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    nb.metadata.pop("widgets", None)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(names: list[str]) -> int:
    paths = [HERE / n for n in names] if names else sorted(HERE.glob("*.ipynb"))
    missing = [str(p.name) for p in paths if not p.is_file()]
    if missing:
        print(f"no notebook {', '.join(missing)} in {HERE.name}/; choose from: "
              + ", ".join(p.name for p in sorted(HERE.glob('*.ipynb'))))
        return 2
    for path in paths:
        try:
            seconds = regenerate(path)
        except CellExecutionError as e:
            print(f"{path.name}: a cell failed, notebook not saved:\n" + "\n".join(str(e).splitlines()[-12:]))
            return 1
        print(f"{path.name}: executed and saved in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
