"""LLM throughput: our client against the bound concurrency / latency, and against the reference design.

    python bench/llm.py [--calls 500 --latency 0.2 --concurrency 16 --reference-sample 6]

Starts the loopback OpenAI-compatible server on 127.0.0.1 in a child process (a real endpoint does not
share our interpreter lock) with a fixed latency per request and no faults, then times:

- project: `--calls` mixed calls (half figure captions with real PNG images, half chunk syntheses of
  English and Chinese chunks) through `EndpointProvider` with `max_concurrency=--concurrency`, no
  client-side rate limit and no cache (every call goes over HTTP), after one warm-up call of each kind
  (first-call imports on both sides are start-up, not throughput). Requests/s is compared with the bound
  a perfect client could reach, concurrency / latency; target ratio >= 0.9.
- reference: the design of the fork's scripts measured on a small sample in the same run: one call at a
  time through a synchronous `openai.OpenAI` client, JSON mode, followed by its fixed sleep (1 s after
  each image, 0.5 s after each chunk); the per-call times are extrapolated to the same mix of `--calls`.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import sys
import time
from pathlib import Path

import openai
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clara_pipeline.llm import CAPTION, CHUNK_SYNTHESIS, CaptionInput, ChunkInput, EndpointProvider, LLMConfig  # noqa: E402
from clara_pipeline.llm.loopback import LoopbackProcess  # noqa: E402

REFERENCE_SLEEP_S = {"caption": 1.0, "chunk_synthesis": 0.5}  # the fork's fixed sleeps (extract_images.py, synthesize_data.py)

EN_SENTENCES = [
    "The X{n} pump runs at {v} V and draws up to {a} A.",
    "It must be inspected every {m} months by the Quality Assurance team.",
    "If the pressure exceeds {p} bar, the operator stops the pump and reports to the maintenance lead.",
    "Replace the filter after {h} hours of operation.",
    "Every inspection is logged in the SAP system within {d} days.",
]
ZH_SENTENCES = [
    "X{n} 水泵使用 {v} V 电源，最大电流为 {a} A。",
    "质量保证团队每 {m} 个月检查一次水泵。",
    "如果压力超过 {p} bar，操作员必须停止水泵并向维护负责人报告。",
    "过滤器在运行 {h} 小时后更换。",
    "每次检查都必须在 {d} 天内记录在 SAP 系统中。",
]


def make_image(rng: random.Random, index: int) -> bytes:
    """A 640x420 flowchart-like PNG with alpha, different for every index."""
    image = Image.new("RGBA", (640, 420), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for step in range(5):
        x, y = 20 + step * 120, rng.randint(40, 300)
        draw.rectangle([x, y, x + 100, y + 60], outline=(20, 20, 20, 255), fill=(rng.randint(0, 255), 140, 210, 255))
        draw.text((x + 8, y + 22), f"step {index}.{step}", fill=(0, 0, 0, 255))
        if step:
            draw.line([x - 20, y + 30, x, y + 30], fill=(0, 0, 0, 255), width=2)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def make_chunk(rng: random.Random, index: int) -> ChunkInput:
    lang = "zh" if index % 2 else "en"
    values = {"n": 100 + index, "v": rng.choice([12, 24, 48]), "a": rng.randint(2, 9), "m": rng.randint(3, 12),
              "p": rng.randint(4, 12), "h": rng.randint(200, 900), "d": rng.randint(2, 9)}
    sentences = ZH_SENTENCES if lang == "zh" else EN_SENTENCES
    heading = f"# 设备维护 {index}" if lang == "zh" else f"# Pump maintenance {index}"
    body = ("" if lang == "zh" else " ").join(s.format(**values) for s in sentences)
    return ChunkInput(f"{heading}\n{body}", lang, n_pairs=5)


def make_items(calls: int, seed: int = 0) -> tuple[dict[str, CaptionInput], dict[str, ChunkInput]]:
    rng = random.Random(seed)
    images = {f"img-{i}": CaptionInput(make_image(rng, i), lang="zh" if i % 2 else "en",
                                       context_before="下图显示维护流程。" if i % 2 else "The maintenance flow is shown below.")
              for i in range(calls // 2)}
    chunks = {f"chunk-{i}": make_chunk(rng, i) for i in range(calls - calls // 2)}
    return images, chunks


async def run_project(url: str, images: dict, chunks: dict, concurrency: int, warmup: tuple[dict, dict]) -> dict:
    config = LLMConfig(base_url=url, api_key="bench-key", max_concurrency=concurrency, requests_per_minute=None,
                       timeout_s=30)
    provider = EndpointProvider(config, cache=None)
    try:
        # One call of each kind first: first-call imports and set-up on both sides are not throughput.
        await asyncio.gather(provider.caption_batch(warmup[0]), provider.synthesize_batch(warmup[1]))
        before = provider.usage.snapshot()
        start = time.perf_counter()
        captions, synthesis = await asyncio.gather(provider.caption_batch(images), provider.synthesize_batch(chunks))
        wall = time.perf_counter() - start
    finally:
        await provider.aclose()
    usage = provider.usage.since(before)
    return {"wall_s": wall, "http_requests": usage.http_requests,
            "failures": len(captions.failures) + len(synthesis.failures),
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}


def run_reference(url: str, images: dict, chunks: dict, sample: int) -> dict:
    """One call at a time, JSON mode, then the fork's fixed sleep; per-call seconds by task."""
    client = openai.OpenAI(base_url=url, api_key="bench-key")  # SDK defaults, as the fork used them
    per_task: dict[str, list[float]] = {"caption": [], "chunk_synthesis": []}
    work = [(CAPTION, item) for item in list(images.values())[: sample // 2]]
    work += [(CHUNK_SYNTHESIS, item) for item in list(chunks.values())[: sample - sample // 2]]
    try:
        for task, item in work:
            start = time.perf_counter()
            messages = task.build_messages(item)
            reply = client.chat.completions.create(model="bench", messages=messages, max_tokens=task.max_tokens,
                                                   response_format={"type": "json_object"}, timeout=60)
            json.loads(reply.choices[0].message.content)
            time.sleep(REFERENCE_SLEEP_S[task.name])
            per_task[task.name].append(time.perf_counter() - start)
    finally:
        client.close()
    return {name: sum(times) / len(times) for name, times in per_task.items() if times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--reference-sample", type=int, default=6)
    args = parser.parse_args()

    images, chunks = make_items(args.calls)
    warm_images, warm_chunks = make_items(2, seed=1)
    warmup = ({f"warm-{k}": v for k, v in warm_images.items()}, {f"warm-{k}": v for k, v in warm_chunks.items()})
    with LoopbackProcess(latency_s=args.latency) as server:
        project = asyncio.run(run_project(server.url, images, chunks, args.concurrency, warmup))
        server_max_in_flight = server.stats()["max_in_flight"]
        reference = run_reference(server.url, images, chunks, args.reference_sample)

    bound = args.concurrency / args.latency
    rate = project["http_requests"] / project["wall_s"]
    reference_wall = len(images) * reference["caption"] + len(chunks) * reference["chunk_synthesis"]
    reference_rate = args.calls / reference_wall
    print(json.dumps({
        "benchmark": "llm",
        "calls": args.calls,
        "mix": {"caption": len(images), "chunk_synthesis": len(chunks)},
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "project": {
            "wall_s": round(project["wall_s"], 3),
            "http_requests": project["http_requests"],
            "failures": project["failures"],
            "requests_per_s": round(rate, 2),
            "server_max_in_flight": server_max_in_flight,
            "prompt_tokens": project["prompt_tokens"],
            "completion_tokens": project["completion_tokens"],
        },
        "bound_requests_per_s": round(bound, 2),
        "ratio_to_bound": round(rate / bound, 3),
        "target_ratio": 0.9,
        "meets_target": rate / bound >= 0.9,
        "reference": {
            "design": "sequential, sync client, JSON mode, sleep 1 s after each image and 0.5 s after each chunk",
            "sample_calls": args.reference_sample,
            "seconds_per_call": {k: round(v, 3) for k, v in reference.items()},
            "extrapolated_wall_s": round(reference_wall, 1),
            "requests_per_s": round(reference_rate, 3),
        },
        "speedup_vs_reference": round(rate / reference_rate, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
