"""The client through real HTTP: the `openai` SDK against the loopback server, with injected faults."""

import asyncio
import logging
import time

import pytest

from clara_pipeline.llm import (BatchFailed, CaptionInput, ChunkInput, EndpointProvider, FailureKind, ResponseCache,
                                open_provider, run_captions, run_chunk_synthesis)
from clara_pipeline.llm.loopback import FaultPlan
from clara_pipeline.llm.offline import hashed_embedding

from .helpers import API_KEY, EN_CHUNK, ZH_CHUNK, fast_config, make_png


def chunks(n: int) -> dict[str, ChunkInput]:
    """n distinct chunks, alternating English and Chinese."""
    return {f"chunk-{i}": ChunkInput(f"{ZH_CHUNK}\n第 {i} 条记录。" if i % 2 else f"{EN_CHUNK}\nRecord number {i}.",
                                     "zh" if i % 2 else "en", 3 + i % 4)
            for i in range(n)}


def images(n: int) -> dict[str, CaptionInput]:
    return {f"img-{i}": CaptionInput(make_png(seed=i), lang="zh" if i % 2 else "en",
                                     context_before="下图显示接线方式。" if i % 2 else "The wiring is shown below.")
            for i in range(n)}


def synthesize(config, items, cache_path=None):
    async def main():
        async with open_provider(config, cache_path=cache_path, seed=0) as provider:
            return await provider.synthesize_batch(items), provider
    return asyncio.run(main())


def test_mixed_faults_end_with_every_item_done_or_reported_and_a_rerun_pays_nothing(loopback, tmp_path):
    rates = {"rate_limit": 0.06, "server_error": 0.05, "unavailable": 0.04, "timeout": 0.03, "malformed": 0.04,
             "fenced": 0.04, "truncated": 0.04}  # 30% of requests
    server = loopback(latency_s=0.01, faults=FaultPlan(rates=rates, seed=3, retry_after_s=0.05, hang_s=3))
    config = fast_config(server, timeout_s=0.5, max_concurrency=8)
    cache = tmp_path / "llm_cache.sqlite"
    caption_items, chunk_items = images(30), chunks(30)

    captions = run_captions(caption_items, config=config, cache_path=cache)
    synthesis = run_chunk_synthesis(chunk_items, config=config, cache_path=cache)

    for result, items in ((captions, caption_items), (synthesis, chunk_items)):
        assert set(result.outputs) | set(result.failures) == set(items)  # none lost
        assert not set(result.outputs) & set(result.failures)
        assert list(result.outputs) == [k for k in items if k in result.outputs]  # input order
        for failure in result.failures.values():
            assert failure.kind in vars(FailureKind).values() and failure.message
    injected = server.stats.by_fault
    assert len(injected) >= 6 and sum(injected.values()) >= 0.2 * server.stats.total  # the faults really happened
    usage = synthesis.usage
    assert usage.retries > 0 and usage.reasks > 0 and usage.http_requests > len(chunk_items)
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0

    server.reset_stats()
    again = run_captions(caption_items, config=config, cache_path=cache)
    again_synthesis = run_chunk_synthesis(chunk_items, config=config, cache_path=cache)
    assert again.usage.cache_hits == len(captions.outputs)
    assert again_synthesis.usage.cache_hits == len(synthesis.outputs)
    assert again.outputs == {k: v for k, v in captions.outputs.items()}
    if not captions.failures and not synthesis.failures:
        assert server.stats.total == 0  # nothing paid twice
    else:  # only the failed items are asked again
        assert set(server.stats.by_task) <= {"caption", "chunk_synthesis"}
        assert again.usage.items_ok + again.usage.items_failed == len(caption_items)


def test_cache_hit_skips_http_and_image_preparation(loopback, tmp_path):
    server = loopback()
    config = fast_config(server)
    items = images(3)
    first = run_captions(items, config=config, cache_path=tmp_path / "c.sqlite")
    assert server.stats.total == 3 and first.usage.cache_hits == 0
    # Same image hash, bytes that would not even decode: a hit never looks at the bytes.
    same_hash = {k: CaptionInput(b"not an image", image_sha256=v.image_sha256, lang=v.lang,
                                 context_before=v.context_before) for k, v in items.items()}
    second = run_captions(same_hash, config=config, cache_path=tmp_path / "c.sqlite")
    assert server.stats.total == 3 and second.usage.cache_hits == 3 and second.outputs == first.outputs
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache.count("caption") == 3


def test_json_schema_rejected_falls_back_to_json_mode_and_remembers(loopback):
    server = loopback(reject_json_schema=True)
    config = fast_config(server, max_concurrency=2)

    async def main():
        async with open_provider(config) as provider:
            first = await provider.synthesize_batch(chunks(4))
            formats_after_first = dict(server.stats.by_response_format)
            second = await provider.synthesize_batch({f"more-{k}": v for k, v in chunks(4).items()})
            return first, second, formats_after_first, provider.describe()
    first, second, formats, described = asyncio.run(main())
    assert not first.failures and not second.failures
    assert 1 <= formats["json_schema"] <= 2  # only the first requests in flight tried it
    assert server.stats.by_response_format["json_schema"] == formats["json_schema"]  # never again
    assert server.stats.by_response_format["json_object"] == 8
    assert described["structured_output"]["chat-model"] == "json_object"


def test_no_response_format_at_all_when_both_are_rejected(loopback):
    server = loopback(reject_json_schema=True, reject_json_object=True)
    result, provider = synthesize(fast_config(server, max_concurrency=1), chunks(2))
    assert not result.failures
    assert server.stats.by_response_format == {"json_schema": 1, "json_object": 1, "none": 2}


def test_fenced_json_parses_without_a_reask(loopback):
    server = loopback(faults=FaultPlan(rates={"fenced": 1.0}))
    result, _ = synthesize(fast_config(server), chunks(3))
    assert len(result.outputs) == 3 and result.usage.reasks == 0 and server.stats.by_fault["fenced"] == 3


def test_truncated_answer_is_reasked_then_succeeds(loopback):
    server = loopback(faults=FaultPlan(script=["truncated", "malformed"]))
    result, _ = synthesize(fast_config(server, max_concurrency=1), chunks(1))
    assert len(result.outputs) == 1
    assert result.usage.reasks == 2 and server.stats.total == 3
    assert result.usage.completion_tokens > 0  # the rejected answers were paid for and are counted


@pytest.mark.parametrize("fault, kind", [("malformed", FailureKind.INVALID_OUTPUT), ("truncated", FailureKind.TRUNCATED)])
def test_an_answer_that_never_validates_is_reported_after_max_reasks(loopback, fault, kind):
    server = loopback(faults=FaultPlan(rates={fault: 1.0}))
    result, _ = synthesize(fast_config(server, max_reasks=2), chunks(1))
    failure = result.failures["chunk-0"]
    assert failure.kind == kind and failure.attempts == 3 and server.stats.total == 3
    assert "2 re-asks" in failure.message
    with pytest.raises(BatchFailed, match="1 of 1 items failed"):
        result.raise_if_failures_exceed(0.5)


def test_retry_after_is_honoured(loopback):
    server = loopback(faults=FaultPlan(script=["rate_limit"], retry_after_s=1.0))
    result, _ = synthesize(fast_config(server, backoff_base_s=0.01, backoff_max_s=0.02), chunks(1))
    assert len(result.outputs) == 1 and result.usage.retries_by_cause == {"rate_limited": 1}
    first, second = server.stats.arrivals
    assert second - first >= 1.0  # waited what the server asked, not the 20 ms backoff


def test_a_non_retryable_400_fails_that_item_at_once(loopback):
    server = loopback(faults=FaultPlan(script=["bad_request"]))
    result, _ = synthesize(fast_config(server, max_concurrency=1, backoff_base_s=1, backoff_max_s=1), chunks(3))
    assert result.usage.retries == 0  # no retry, so no backoff sleep
    [failure] = result.failures.values()
    assert failure.kind == FailureKind.HTTP_ERROR and failure.status_code == 400 and failure.attempts == 1
    assert "HTTP 400" in failure.message and server.url.removesuffix("/v1") in failure.message
    assert len(result.outputs) == 2 and server.stats.total == 3


def test_a_wrong_key_fails_fast_with_401(loopback):
    server = loopback(api_key="the-right-key")
    result, _ = synthesize(fast_config(server), chunks(2))
    assert {f.status_code for f in result.failures.values()} == {401}
    assert server.stats.total == 2 and server.stats.auth_failures == 2


def test_timeouts_are_retried(loopback):
    server = loopback(faults=FaultPlan(script=["timeout"], hang_s=2.0))
    started = time.monotonic()
    result, _ = synthesize(fast_config(server, timeout_s=0.3), chunks(1))
    assert len(result.outputs) == 1 and result.usage.retries_by_cause == {"timeout": 1}
    assert time.monotonic() - started >= 0.3  # the hung request was given its full timeout, then retried
    assert server.stats.total == 2


def test_transient_errors_that_never_end_are_reported_after_max_retries(loopback):
    server = loopback(faults=FaultPlan(rates={"unavailable": 1.0}))
    result, _ = synthesize(fast_config(server, max_retries=3), chunks(1))
    failure = result.failures["chunk-0"]
    assert failure.kind == FailureKind.SERVER_ERROR and failure.attempts == 4 and server.stats.total == 4
    assert failure.status_code == 503 and "gave up after 4 attempts" in failure.message


def test_concurrency_never_exceeds_the_bound(loopback):
    server = loopback(latency_s=0.1)
    result, _ = synthesize(fast_config(server, max_concurrency=4), chunks(16))
    assert len(result.outputs) == 16
    assert server.stats.max_in_flight == 4  # reached, never passed


def test_requests_per_minute_spaces_the_calls(loopback):
    server = loopback()

    async def main():
        async with open_provider(fast_config(server, requests_per_minute=600, max_concurrency=16)) as provider:
            # One request first: the SDK's first-call set-up would otherwise delay the first burst on its
            # way to the server and bunch it up with later requests at the server's clock.
            await provider.synthesize(ChunkInput(EN_CHUNK, "en", 3))
            server.reset_stats()
            return await provider.synthesize_batch(chunks(25))
    result = asyncio.run(main())
    assert len(result.outputs) == 25
    arrivals = server.stats.arrivals
    # 10 per second with a burst of 10: any n consecutive requests span at least (n - 10) / 10 s (with 50 ms
    # of slack for the way from the limiter to the server's clock). Unlimited, all 25 arrive within ~50 ms.
    for j in range(len(arrivals)):
        for i in range(j):
            assert j - i + 1 <= 10 + 10 * (arrivals[j] - arrivals[i] + 0.05)
    assert arrivals[-1] - arrivals[0] >= (25 - 10) / 10 - 0.1


def test_an_image_that_cannot_be_sent_fails_without_a_request(loopback):
    server = loopback()
    tiny = {"tiny": CaptionInput(make_png(8, 8), lang="en"), "ok": CaptionInput(make_png(), lang="en")}
    result = run_captions(tiny, config=fast_config(server))
    assert result.failures["tiny"].kind == FailureKind.INVALID_INPUT and "below 16 px" in result.failures["tiny"].message
    assert set(result.outputs) == {"ok"} and server.stats.total == 1


def test_the_api_key_is_never_logged_nor_stored(loopback, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server = loopback(api_key=API_KEY, faults=FaultPlan(rates={"rate_limit": 0.2, "bad_request": 0.1,
                                                                "malformed": 0.2}, retry_after_s=0.01))
    cache = tmp_path / "cache.sqlite"
    config = fast_config(server, embedding_model="embed-model")
    run_captions(images(4), config=config, cache_path=cache)
    result = run_chunk_synthesis(chunks(8), config=config, cache_path=cache)
    assert server.stats.auth_failures == 0 and result.outputs  # the key was sent and accepted
    assert len(caplog.records) > 20 and "HTTP Request" in caplog.text  # the SDK's debug logging was on
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(config) and API_KEY not in str(result.metadata())
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("cache.sqlite"))
    assert len(stored) > 0 and API_KEY.encode() not in stored


def test_embeddings_are_batched_and_cached(loopback, tmp_path):
    server = loopback()
    config = fast_config(server, embedding_model="embed-model", embedding_batch_size=3)
    texts = [f"pump record {i}" for i in range(7)]

    async def main():
        async with open_provider(config, cache_path=tmp_path / "c.sqlite") as provider:
            assert provider.can_embed
            first = await provider.embed(texts)
            second = await provider.embed(texts + ["one more"])
            return first, second
    first, second = asyncio.run(main())
    assert first == [hashed_embedding(t) for t in texts] and second[:7] == first
    assert server.stats.by_task["embedding"] == 3 + 1  # ceil(7 / 3), then only the new text


def test_cost_is_reported_when_prices_are_known(loopback):
    server = loopback()
    result, _ = synthesize(fast_config(server, price_input_per_1m=0.15, price_output_per_1m=0.6), chunks(2))
    usage = result.usage
    assert usage.cost_usd == pytest.approx((usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.6) / 1e6)
    assert result.metadata()["usage"]["cost_usd"] > 0


def test_endpoint_provider_can_be_used_directly(loopback):
    server = loopback()

    async def main():
        provider = EndpointProvider(fast_config(server))
        try:
            caption = await provider.caption(next(iter(images(1).values())))
            synthesis = await provider.synthesize(ChunkInput(EN_CHUNK, "en", 4))
        finally:
            await provider.aclose()
        return caption, synthesis, provider.describe()
    caption, synthesis, described = asyncio.run(main())
    assert caption.title and len(synthesis.qa_pairs) == 4
    assert described["provider"] == "openai-compatible" and described["caption_prompt_version"] == "caption-v2"


def test_the_endpoint_is_not_in_the_cache_key_so_localhost_and_127_0_0_1_share_answers(loopback, tmp_path):
    server = loopback()
    cache = tmp_path / "c.sqlite"
    first = run_chunk_synthesis(chunks(3), config=fast_config(server), cache_path=cache)
    assert first.usage.http_requests == 3
    other_name = fast_config(server, base_url=server.url.replace("127.0.0.1", "localhost"))
    again = run_chunk_synthesis(chunks(3), config=other_name, cache_path=cache)
    assert (again.usage.http_requests, again.usage.cache_hits, len(again.outputs)) == (0, 3, 3)


def test_each_task_has_its_temperature_unless_one_is_configured(loopback):
    server = loopback()
    run_captions(images(1), config=fast_config(server))
    run_chunk_synthesis(chunks(1), config=fast_config(server))
    assert server.stats.temperatures == {"caption:0.2": 1, "chunk_synthesis:0.7": 1}
    server.reset_stats()
    run_chunk_synthesis(chunks(1), config=fast_config(server, temperature=0.1))
    assert server.stats.temperatures == {"chunk_synthesis:0.1": 1}


def test_a_reasoning_model_gets_max_completion_tokens_and_no_temperature(loopback):
    server = loopback(reasoning_model=True)
    result = run_chunk_synthesis(chunks(4), config=fast_config(server, max_concurrency=1))
    assert len(result.outputs) == 4 and not result.failures
    # two refusals (max_tokens, then temperature) on the first item; the model is remembered after that
    assert server.stats.total == 4 + 2
    assert server.stats.temperatures["chunk_synthesis:none"] == 4
    assert server.stats.token_parameters["max_completion_tokens"] == 5


def test_an_item_that_failed_validation_is_parked_and_not_paid_for_again(loopback, tmp_path):
    cache = tmp_path / "c.sqlite"
    broken = loopback(faults=FaultPlan(rates={"malformed": 1.0}))
    first = run_chunk_synthesis(chunks(2), config=fast_config(broken, max_reasks=1), cache_path=cache)
    assert first.failures_by_kind() == {"invalid_output": 2} and first.parked == 0
    assert broken.stats.total == 4
    good = loopback()
    second = run_chunk_synthesis(chunks(2), config=fast_config(good), cache_path=cache)
    assert good.stats.total == 0 and second.parked == 2 and second.metadata()["parked"] == 2
    assert second.usage.items_parked == 2
    assert "retry_failed" in second.failures["chunk-0"].message
    retried = run_chunk_synthesis(chunks(2), config=fast_config(good), cache_path=cache, retry_failed=True)
    assert len(retried.outputs) == 2 and good.stats.total == 2
    with ResponseCache(cache) as opened:
        assert opened.count_parked() == 0


def test_outages_and_request_errors_are_never_parked(loopback, tmp_path):
    cache = tmp_path / "c.sqlite"
    server = loopback(faults=FaultPlan(script=["bad_request", "server_error", "server_error"]))
    result = run_chunk_synthesis(chunks(2), config=fast_config(server, max_retries=1, max_concurrency=1),
                                 cache_path=cache)
    assert result.failures_by_kind() == {"http_error": 1, "server_error": 1}
    with ResponseCache(cache) as opened:
        assert opened.count_parked() == 0


def test_a_reply_with_a_bad_pair_keeps_the_good_ones_without_a_reask(loopback):
    server = loopback(faults=FaultPlan(rates={"bad_pair": 1.0}))
    result = run_chunk_synthesis(chunks(4), config=fast_config(server))
    assert len(result.outputs) == 4 and not result.failures
    assert result.usage.reasks == 0 and server.stats.total == 4
    for key, output in result.outputs.items():
        assert output.rejected_pairs == ["pair 1: the question refers to 'the text/passage/document'; name the "
                                         "subject so it stands on its own"]
        assert len(output.qa_pairs) == chunks(4)[key].n_pairs


def test_the_length_limits_are_in_the_schema_unless_the_server_refuses_them(loopback):
    plain = loopback()
    run_chunk_synthesis(chunks(1), config=fast_config(plain))
    strict = loopback(reject_length_keywords=True)
    result = run_chunk_synthesis(chunks(3), config=fast_config(strict, max_concurrency=1))
    assert len(result.outputs) == 3 and not result.failures
    assert strict.stats.total == 4  # one refusal, then the schema without maxLength for every request
    assert strict.stats.by_response_format == {"json_schema": 4}
