"""Hostile inputs built on the fly (zip, PDF-stream and pixel bombs), and a peak-memory probe.

Run as a script to print the peak memory of ingesting each bomb (the numbers in the README):

    OMP_NUM_THREADS=1 .venv/bin/python -m tests.clara_pipeline.ingest.bombs
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

from tests.clara_pipeline import docgen

MB = 1024 * 1024
# One paragraph of ordinary Word markup, 100 bytes: a run with properties and text.
_PARAGRAPH = b'<w:p><w:pPr><w:jc w:val="both"/></w:pPr><w:r><w:rPr><w:b/></w:rPr><w:t>Lockout tagout</w:t></w:r></w:p>'
_BODY_OPEN = b'<w:body>'


def docx_bomb(path: Path, inflated_bytes: int, unit: bytes = _PARAGRAPH) -> Path:
    """A real .docx whose word/document.xml repeats `unit` until it is about `inflated_bytes` long.

    The repeated XML deflates about 1000:1 (1 GB of XML in about 1 MB). The parts are written with raw zlib
    streams, which is much faster than zipfile's writer for a gigabyte.
    """
    template = docgen.sample_docx(path.with_name(path.stem + "_template.docx"))
    with zipfile.ZipFile(template) as zf:
        parts = {name: zf.read(name) for name in zf.namelist()}
    template.unlink()
    document = parts["word/document.xml"]
    head, _, tail = document.partition(_BODY_OPEN)
    head += _BODY_OPEN
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in parts.items():
            if name != "word/document.xml":
                out.writestr(name, data)
        info = zipfile.ZipInfo("word/document.xml", date_time=(2024, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with out.open(info, "w", force_zip64=True) as member:
            member.write(head)
            block = unit * (MB // len(unit))
            for _ in range(max(1, inflated_bytes // len(block))):
                member.write(block)
            member.write(tail)
    return path


def pdf_stream_bomb(path: Path, inflated_bytes: int) -> Path:
    """A one-page PDF whose content stream inflates to about `inflated_bytes` of text-drawing operators."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "A page whose content stream is a bomb.")
    doc.save(path)
    doc.close()
    # Replace the page's content with one huge FlateDecode stream of "show this text" operators.
    unit = b"BT /F1 1 Tf 10 10 Td (AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA) Tj ET\n"
    compressor = zlib.compressobj(9)
    block = unit * (MB // len(unit))
    chunks = [compressor.compress(block) for _ in range(max(1, inflated_bytes // len(block)))]
    stream = b"".join(chunks) + compressor.flush()
    doc = pymupdf.open(path)
    xref = doc[0].get_contents()[0]
    doc.update_stream(xref, stream, compress=False)
    doc.xref_set_key(xref, "Filter", "/FlateDecode")
    doc.save(path, incremental=True, encryption=0)
    doc.close()
    return path


def text_file(path: Path, size: int) -> Path:
    line = "The EG-400 gateway runs on 24 V DC and draws 6 W in normal use. 网关功耗 6 W。\n".encode()
    with open(path, "wb") as f:
        block = line * (MB // len(line))
        for _ in range(max(1, size // len(block))):
            f.write(block)
    return path


_PROBE = """
import json, resource, sys, time
from pathlib import Path
from clara_pipeline.ingest import ExtractionError, extract_document
from clara_pipeline.ingest.rawfiles import RawFilePolicy
path, policy = Path(sys.argv[1]), RawFilePolicy(**json.loads(sys.argv[2]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    doc = extract_document(path, policy=policy)
    outcome = f"ok, {len(doc.text):,} chars"
except ExtractionError as exc:
    outcome = f"refused: {exc.reason}"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "seconds": round(time.perf_counter() - started, 2),
                  "peak_mb": round(peak / 1024), "baseline_mb": round(before / 1024)}))
"""


def peak_memory(path: Path, policy: dict | None = None, *, limit_mb: int | None = None) -> dict:
    """Extracts `path` in a fresh process; returns its outcome, seconds and peak RSS (ru_maxrss) in MB.

    `limit_mb` caps the child's address space, so a bomb that gets through fails there, not here.
    """
    def cap():
        import resource

        if limit_mb:
            resource.setrlimit(resource.RLIMIT_AS, (limit_mb * MB, limit_mb * MB))

    result = subprocess.run([sys.executable, "-c", _PROBE, str(path), json.dumps(policy or {})],
                            capture_output=True, text=True, preexec_fn=cap, timeout=600,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd())})
    if result.returncode != 0:
        return {"outcome": f"crashed (exit {result.returncode}): {result.stderr.strip().splitlines()[-1:]}"}
    return json.loads(result.stdout)


def main() -> None:
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    cases = {
        "docx_1GB_xml": docx_bomb(tmp / "bomb.docx", 1024 * MB),
        "docx_100MB_xml": docx_bomb(tmp / "bomb100.docx", 100 * MB),
        "pdf_stream_1GB": pdf_stream_bomb(tmp / "bomb.pdf", 1024 * MB),
        "png_60000x60000": tmp / "bomb.png",
        "text_200MB": text_file(tmp / "big.txt", 200 * MB),
        "text_32MB": text_file(tmp / "limit.txt", 32 * MB),
    }
    cases["png_60000x60000"].write_bytes(docgen.bomb_png())
    generous = {"max_file_bytes": 1 << 40, "max_text_bytes": 1 << 40}
    report = {}
    for name, path in cases.items():
        report[name] = {"file_mb": round(path.stat().st_size / MB, 2), "defaults": peak_memory(path)}
        if "before" in sys.argv:
            report[name]["no_size_limits"] = peak_memory(path, generous, limit_mb=12 * 1024)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
