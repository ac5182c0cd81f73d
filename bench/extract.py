"""Extraction throughput: the project's ingestion against a bare PyMuPDF/python-docx loop, same corpus, same run.

    python bench/extract.py [--pdfs 100 --pages 10 --docx 50 --repeat 2]

Generates a corpus (PDFs with headings, paragraphs, a PNG-with-alpha or JPEG figure on every page and a
ruled table on every third page; DOCX files with headings, lists, a table and inline images), then times:

- bare: the simplest loop that extracts the same things: `page.get_text()`, `page.find_tables()` to
  Markdown (classic ruled-cell finder, as in the project: PyMuPDF 2's default adds an ONNX layout model
  that costs about 1 s per page), `doc.extract_image()` for every image (written to disk by sha256), paragraphs and table cells
  and image parts of each DOCX, one JSON file per document;
- project: `ingest_file` (what the `extracted_document` asset runs): reading order, tables, figures in
  place, image normalization, content-addressed storage, atomic JSON;
- project_2_workers: the same `ingest_file` over a 2-process pool.

Each figure is the best of `--repeat` runs on a fresh output folder. Prints one JSON object.
Targets: project >= 0.9 x bare throughput; 2 workers >= 1.7 x bare.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import docx
import pymupdf
from docx.shared import Inches
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clara_pipeline.ingest.service import ingest_file  # noqa: E402
from clara_pipeline.ingest.sources import partition_key  # noqa: E402
from clara_pipeline.storage import ArtifactStore, sha256_file  # noqa: E402

WORDS = ("controller sensor calibration voltage firmware maintenance interval warranty module bracket "
         "cable torque display alarm reset inspection schedule operator safety valve pressure filter").split()


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "."


def _figures(rng: random.Random, n: int) -> list[tuple[bytes, str]]:
    out = []
    for i in range(n):
        alpha = i % 2 == 0
        image = Image.new("RGBA" if alpha else "RGB", (480, 320), (0, 0, 0, 0) if alpha else (245, 245, 240))
        draw = ImageDraw.Draw(image)
        for j in range(6):
            x, y = rng.randint(10, 380), rng.randint(10, 240)
            draw.rectangle([x, y, x + 90, y + 60], outline=(20, 20, 20, 255), fill=(rng.randint(0, 255), 120, 200, 255))
            draw.text((x + 8, y + 20), f"step {i}.{j}", fill=(0, 0, 0, 255))
        buf = io.BytesIO()
        image.save(buf, "PNG" if alpha else "JPEG", quality=85)
        out.append((buf.getvalue(), "png" if alpha else "jpeg"))
    return out


def make_corpus(root: Path, pdfs: int, pages: int, docxs: int, seed: int = 0) -> int:
    """Writes the corpus; returns the number of PDF pages."""
    rng = random.Random(seed)
    figures = _figures(rng, 60)
    root.mkdir(parents=True, exist_ok=True)
    for d in range(pdfs):
        doc = pymupdf.open()
        for p in range(pages):
            page = doc.new_page()
            page.insert_text((72, 64), f"Section {d}.{p}: {rng.choice(WORDS).title()} procedure", fontsize=18)
            page.insert_textbox(pymupdf.Rect(72, 80, 523, 200), " ".join(_sentence(rng) for _ in range(5)), fontsize=10)
            data, _ = rng.choice(figures)
            page.insert_image(pymupdf.Rect(72, 210, 352, 397), stream=data)
            page.insert_textbox(pymupdf.Rect(72, 405, 523, 420), f"Figure {p + 1}: {_sentence(rng)}", fontsize=9)
            page.insert_textbox(pymupdf.Rect(72, 430, 523, 560), " ".join(_sentence(rng) for _ in range(4)), fontsize=10)
            if p % 3 == 0:
                for r in range(4):
                    for c in range(3):
                        rect = pymupdf.Rect(72 + c * 140, 580 + r * 18, 212 + c * 140, 598 + r * 18)
                        page.draw_rect(rect, color=(0, 0, 0), width=0.6)
                        page.insert_text((rect.x0 + 3, rect.y1 - 5), f"{rng.choice(WORDS)} {r}{c}", fontsize=9)
        doc.save(root / f"manual_{d:03}.pdf", garbage=3, deflate=True)
    for d in range(docxs):
        document = docx.Document()
        for s in range(6):
            document.add_heading(f"Policy {d}.{s}", level=1 + s % 2)
            document.add_paragraph(" ".join(_sentence(rng) for _ in range(3)))
            document.add_paragraph(_sentence(rng), style="List Bullet")
            document.add_paragraph(_sentence(rng), style="List Number")
            if s % 2 == 0:
                data, _ = rng.choice(figures)
                document.add_paragraph().add_run().add_picture(io.BytesIO(data), width=Inches(3))
        table = document.add_table(rows=5, cols=3)
        for r in range(5):
            for c in range(3):
                table.cell(r, c).text = f"{rng.choice(WORDS)} {r}{c}"
        document.save(root / f"policy_{d:03}.docx")
    return pdfs * pages


# -- the bare loop ---------------------------------------------------------------------------------------

def bare_extract(path: Path, out: Path) -> None:
    images = out / "images"
    texts = []
    if path.suffix == ".pdf":
        with pymupdf.open(path) as doc:
            for page in doc:
                texts.append(page.get_text())
                for table in page.find_tables(use_layout=False).tables:  # the same table finder as ours
                    texts.append(table.to_markdown())
                for xref, *_ in page.get_images():
                    data = doc.extract_image(xref)["image"]
                    _write_image(images, data)
    else:
        document = docx.Document(str(path))
        texts += [p.text for p in document.paragraphs]
        for table in document.tables:
            texts += [" | ".join(c.text for c in row.cells) for row in table.rows]
        for rel in document.part.rels.values():
            if "image" in rel.reltype:
                _write_image(images, rel.target_part.blob)
    target = out / "documents" / f"{path.stem}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"source": path.name, "text": "\n".join(texts)}, ensure_ascii=False))


def _write_image(folder: Path, data: bytes) -> None:
    sha = hashlib.sha256(data).hexdigest()
    path = folder / sha[:2] / sha
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# -- the project ------------------------------------------------------------------------------------------

def project_extract(args: tuple[Path, Path, Path]) -> int:
    path, root, out = args
    sha = sha256_file(path)
    outcome = ingest_file(path, root=root, key=partition_key(path.name, sha), sha256=sha, store=ArtifactStore(out))
    return len(outcome.document.images)


def timed(fn, repeat: int, scratch: Path) -> float:
    best = float("inf")
    for _ in range(repeat):
        out = scratch / "out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        started = time.perf_counter()
        fn(out)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pdfs", type=int, default=100)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--docx", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="clara-bench-") as tmp:
        scratch = Path(tmp)
        corpus = scratch / "corpus"
        started = time.perf_counter()
        pages = make_corpus(corpus, args.pdfs, args.pages, args.docx)
        generate_s = time.perf_counter() - started
        files = sorted(corpus.iterdir())
        for f in files:  # warm the page cache so the first contender pays no extra I/O
            f.read_bytes()

        def bare(out: Path) -> None:
            for f in files:
                bare_extract(f, out)

        def project(out: Path) -> None:
            for f in files:
                project_extract((f, corpus, out))

        def project_2(out: Path) -> None:
            with ProcessPoolExecutor(max_workers=2) as pool:
                list(pool.map(project_extract, [(f, corpus, out) for f in files], chunksize=4))

        bare_s = timed(bare, args.repeat, scratch)
        project_s = timed(project, args.repeat, scratch)
        project_2_s = timed(project_2, args.repeat, scratch)

    print(json.dumps({
        "benchmark": "extract",
        "documents": len(files),
        "pdf_pages": pages,
        "docx_files": args.docx,
        "corpus_generation_s": round(generate_s, 2),
        "bare_s": round(bare_s, 3),
        "project_s": round(project_s, 3),
        "project_2_workers_s": round(project_2_s, 3),
        "ratio_project_vs_bare": round(bare_s / project_s, 3),
        "ratio_2_workers_vs_bare": round(bare_s / project_2_s, 3),
        "targets": {"ratio_project_vs_bare": 0.9, "ratio_2_workers_vs_bare": 1.7},
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
