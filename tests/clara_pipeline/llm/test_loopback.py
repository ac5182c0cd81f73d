"""The loopback server itself: concurrency, task recognition, faults and counters, as the other tests rely on."""

import asyncio
import json

import openai
import pytest

from clara_pipeline.llm.loopback import FaultPlan, LoopbackProcess
from clara_pipeline.llm.tasks import CAPTION, CHUNK_SYNTHESIS, Caption, CaptionInput, ChunkInput, ChunkSynthesis

from .helpers import EN_CHUNK, make_png


def raw_client(server, **kwargs) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url, api_key="k", max_retries=0, **kwargs)


def test_sixteen_requests_at_200_ms_run_side_by_side(loopback):
    server = loopback(latency_s=0.2)
    messages = CHUNK_SYNTHESIS.build_messages(ChunkInput(EN_CHUNK, "en", 3))

    async def main():
        client = raw_client(server)
        try:
            await asyncio.gather(*(client.chat.completions.create(model="m", messages=messages) for _ in range(16)))
        finally:
            await client.close()
    asyncio.run(main())
    # all 16 were inside the server at once (a serialising server would never hold more than one)
    assert server.stats.max_in_flight == 16 and server.stats.in_flight == 0


def test_answers_the_task_the_prompt_asks_for_with_realistic_usage(loopback):
    server = loopback()

    async def main():
        client = raw_client(server)
        try:
            caption = await client.chat.completions.create(
                model="v", messages=CAPTION.build_messages(CaptionInput(make_png(), lang="en")),
                response_format={"type": "json_object"})
            synthesis = await client.chat.completions.create(
                model="m", messages=CHUNK_SYNTHESIS.build_messages(ChunkInput(EN_CHUNK, "en", 5)))
            embedding = await client.embeddings.create(model="e", input=["a", "b"])
            return caption, synthesis, embedding
        finally:
            await client.close()
    caption, synthesis, embedding = asyncio.run(main())
    assert Caption.model_validate_json(caption.choices[0].message.content).title
    assert len(ChunkSynthesis.model_validate_json(synthesis.choices[0].message.content).qa_pairs) == 5
    assert caption.usage.prompt_tokens > 85 + 170  # text plus at least one image tile
    assert synthesis.usage.completion_tokens > 50
    assert [d.index for d in embedding.data] == [0, 1] and len(embedding.data[0].embedding) == 256
    assert server.stats.by_task == {"caption": 1, "chunk_synthesis": 1, "embedding": 1}
    assert server.stats.by_response_format == {"json_object": 1, "none": 1}


def test_a_script_sets_the_faults_of_the_first_requests_in_order(loopback):
    server = loopback(faults=FaultPlan(script=["rate_limit", None, "server_error"], retry_after_s=3))
    messages = CHUNK_SYNTHESIS.build_messages(ChunkInput(EN_CHUNK, "en", 3))

    async def main():
        client = raw_client(server)
        outcomes = []
        try:
            for _ in range(4):
                try:
                    await client.chat.completions.create(model="m", messages=messages)
                    outcomes.append("ok")
                except openai.APIStatusError as exc:
                    outcomes.append((exc.status_code, exc.response.headers.get("retry-after")))
        finally:
            await client.close()
        return outcomes
    assert asyncio.run(main()) == [(429, "3"), "ok", (500, None), "ok"]
    assert server.stats.by_fault == {"rate_limit": 1, "server_error": 1}


def test_fault_plans_are_checked():
    with pytest.raises(ValueError, match="unknown fault"):
        FaultPlan(rates={"meteor": 0.1})
    with pytest.raises(ValueError, match="sum to at most 1"):
        FaultPlan(rates={"rate_limit": 0.7, "timeout": 0.6})
    plan = FaultPlan(rates={"rate_limit": 0.3}, seed=1)
    draws = [plan.draw() for _ in range(1000)]
    assert 250 < draws.count("rate_limit") < 350 and set(draws) == {"rate_limit", None}


def test_runs_in_a_child_process_for_benchmarks():
    with LoopbackProcess(latency_s=0.0) as server:
        async def main():
            client = raw_client(server)
            try:
                return await client.chat.completions.create(
                    model="m", messages=CHUNK_SYNTHESIS.build_messages(ChunkInput(EN_CHUNK, "en", 3)))
            finally:
                await client.close()
        reply = asyncio.run(main())
        assert json.loads(reply.choices[0].message.content)["qa_pairs"]
        assert server.stats()["by_task"] == {"chunk_synthesis": 1}
