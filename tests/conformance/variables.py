"""Regenerates variables.json, the checked-in list of every entry's variables.

    python -m tests.conformance.variables            # rewrite the whole list
    python -m tests.conformance.variables Linear     # only the named entries

Review the diff before committing it: a changed line is a renamed or reshaped variable,
which breaks users' checkpoints.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.conformance import test_conformance as shared  # noqa: E402
from tests.conformance.registry import ENTRIES  # noqa: E402


def main(names: list[str]) -> None:
    path = shared.VARIABLES_FILE
    listing = {}
    if names and os.path.exists(path):
        with open(path) as f:
            listing = json.load(f)
    for entry in ENTRIES:
        if not names or entry.name in names:
            module, _ = shared.build(entry)
            listing[entry.name] = shared.describe_variables(module)
    known = {e.name for e in ENTRIES}
    listing = {k: v for k, v in sorted(listing.items()) if k in known}
    with open(path, "w") as f:
        json.dump(listing, f, indent=1)
        f.write("\n")
    print(f"wrote {len(listing)} entries to {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
