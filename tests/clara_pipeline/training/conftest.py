"""Tiny training data in the three stage formats, written into a temporary artifacts folder."""

import json
from pathlib import Path

FACTS = [  # (entity, document, question, answer)
    ("XR-17 valve", "The XR-17 valve has a maximum pressure of 42 bar and is made of forged brass.",
     "What is the maximum pressure of the XR-17 valve?", "42 bar"),
    ("Kestrel pump", "The Kestrel pump moves 310 litres per minute and weighs 18 kilograms.",
     "How many litres per minute does the Kestrel pump move?", "310 litres"),
    ("Orin gateway", "The Orin gateway runs firmware 3.2.1 and uses port 8443 for its web console.",
     "Which port does the Orin gateway use for its web console?", "8443"),
    ("Delta-9 sensor", "The Delta-9 sensor measures humidity between 5 and 95 percent every 2 seconds.",
     "How often does the Delta-9 sensor measure?", "every 2 seconds"),
    ("Halden relay", "The Halden relay switches 16 amperes and was designed in Trondheim.",
     "Where was the Halden relay designed?", "Trondheim"),
    ("Moss fan", "The Moss fan spins at 2400 rpm and draws 35 watts.",
     "How fast does the Moss fan spin?", "2400 rpm"),
    ("Pike meter", "The Pike meter records energy use every 15 minutes on a microSD card.",
     "Where does the Pike meter record energy use?", "on a microSD card"),
    ("Wren camera", "The Wren camera has a 4 millimetre lens and is rated IP67.",
     "Which rating does the Wren camera have?", "IP67"),
]
TRAIN, HELD_OUT = FACTS[:6], FACTS[6:]


def _question_rows(facts, n_docs):
    docs = [f[1] for f in FACTS]
    rows = []
    for i, (_, doc, question, answer) in enumerate(facts):
        others = [d for d in docs if d != doc][: n_docs - 1]
        position = i % n_docs
        row_docs = others[:position] + [doc] + others[position:]
        rows.append({"question": question, "docs": row_docs, "answer": answer, "pos_index": [position]})
    return rows


def write_tiny_datasets(folder: Path) -> Path:
    """Write pretrain.jsonl, instruction(_eval).jsonl and end_to_end(_eval).jsonl into `folder`; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    pretrain = []
    for entity, doc, question, answer in FACTS:
        pretrain.append({"data_type": "qa", "question": [question, "What is described here?"],
                         "answers": [answer, f"the {entity}"], "docs": [doc]})
        pretrain.append({"data_type": "paraphrase", "question": [], "answers": [f"About the {entity}: {doc}"],
                         "docs": [doc]})
    files = {
        "pretrain.jsonl": pretrain,
        "instruction.jsonl": _question_rows(TRAIN, 5),
        "instruction_eval.jsonl": _question_rows(HELD_OUT, 5),
        "end_to_end.jsonl": _question_rows(TRAIN, 6),
        "end_to_end_eval.jsonl": _question_rows(HELD_OUT, 6),
    }
    for name, rows in files.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder
