"""Copy the first rows of each training dataset that `clara run` produced into example/.

    clara run && python scripts/make_examples.py [--artifacts artifacts] [--rows 3]

The rows are taken as they are (no editing), so example/ shows exactly what the pipeline writes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

FILES = {"pretrain.jsonl": "pretrain_data.jsonl", "instruction.jsonl": "instruction_data.jsonl",
         "end_to_end.jsonl": "end_to_end_data.jsonl"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--out", type=Path, default=Path("example"))
    parser.add_argument("--rows", type=int, default=3)
    args = parser.parse_args()
    args.out.mkdir(exist_ok=True)
    for source, target in FILES.items():
        lines = (args.artifacts / "datasets" / source).read_text(encoding="utf-8").splitlines()
        if source == "pretrain.jsonl":  # show both row kinds
            qa = [line for line in lines if json.loads(line)["data_type"] == "qa"][: args.rows]
            para = [line for line in lines if json.loads(line)["data_type"] == "paraphrase"][:1]
            picked = qa + para
        else:
            picked = lines[: args.rows]
        (args.out / target).write_text("".join(line + "\n" for line in picked), encoding="utf-8")
        print(f"{args.out / target}: {len(picked)} rows")


if __name__ == "__main__":
    main()
