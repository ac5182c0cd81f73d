"""The provider interface the pipeline calls: an endpoint (through `LLMClient`) or the offline stand-in.

    config = LLMConfig.from_env()                        # None: no endpoint configured -> offline
    async with open_provider(config, cache_path=store.llm_cache_path) as provider:
        captions = await provider.caption_batch({image_id: CaptionInput.from_record(r, root) for r in records})
        synthesis = await provider.synthesize_batch({chunk_id: ChunkInput(text, lang, n_pairs=5) ...})
    captions.outputs / captions.failures / captions.usage / captions.metadata()

or, from synchronous code (a Dagster asset body), `run_captions(...)` / `run_chunk_synthesis(...)`.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Mapping, Protocol, Sequence

from .batch import BatchResult
from .cache import ResponseCache
from .client import LLMClient
from .config import LLMConfig
from .offline import OfflineProvider
from .tasks import CAPTION, CHUNK_SYNTHESIS, Caption, CaptionInput, CaptionTask, ChunkInput, ChunkSynthesis, \
    ChunkSynthesisTask
from .usage import UsageStats


class Provider(Protocol):
    """What the pipeline's assets call. Both implementations never raise for one bad item in a batch."""

    kind: str  # "openai-compatible" | "offline"
    can_embed: bool
    usage: UsageStats  # cumulative over this provider's life

    async def caption(self, item: CaptionInput) -> Caption: ...
    async def synthesize(self, item: ChunkInput) -> ChunkSynthesis: ...
    async def caption_batch(self, items: Mapping[str, CaptionInput]) -> BatchResult[Caption]: ...
    async def synthesize_batch(self, items: Mapping[str, ChunkInput]) -> BatchResult[ChunkSynthesis]: ...
    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...
    def describe(self) -> dict[str, Any]: ...
    async def aclose(self) -> None: ...


class EndpointProvider:
    """Captions and chunk synthesis through an OpenAI-compatible endpoint, cached when given a cache."""

    kind = "openai-compatible"

    def __init__(self, config: LLMConfig, *, cache: ResponseCache | None = None, caption_task: CaptionTask = CAPTION,
                 synthesis_task: ChunkSynthesisTask = CHUNK_SYNTHESIS, retry_failed: bool = False,
                 seed: int | None = None):
        self.client = LLMClient(config, cache=cache, retry_failed=retry_failed, seed=seed)
        self.caption_task = caption_task
        self.synthesis_task = synthesis_task

    @property
    def usage(self) -> UsageStats:
        return self.client.usage

    @property
    def can_embed(self) -> bool:
        return self.client.config.embedding_model is not None

    def describe(self) -> dict[str, Any]:
        return {"provider": self.kind, **self.client.describe(),
                "caption_prompt_version": self.caption_task.prompt_version,
                "synthesis_prompt_version": self.synthesis_task.prompt_version}

    async def caption(self, item: CaptionInput) -> Caption:
        return await self.client.run(self.caption_task, item)

    async def synthesize(self, item: ChunkInput) -> ChunkSynthesis:
        return await self.client.run(self.synthesis_task, item)

    async def caption_batch(self, items: Mapping[str, CaptionInput]) -> BatchResult[Caption]:
        result = await self.client.run_batch(self.caption_task, items)
        result.provider = self.describe()  # provider kind and prompt versions, with the client's settings
        return result

    async def synthesize_batch(self, items: Mapping[str, ChunkInput]) -> BatchResult[ChunkSynthesis]:
        result = await self.client.run_batch(self.synthesis_task, items)
        result.provider = self.describe()
        return result

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self.client.embed(texts)

    async def aclose(self) -> None:
        await self.client.aclose()


@asynccontextmanager
async def open_provider(config: LLMConfig | None, *, cache_path: Path | None = None, retry_failed: bool = False,
                        seed: int | None = None) -> AsyncIterator[Provider]:
    """The endpoint provider for `config` (with a response cache at `cache_path`, if given), or the
    offline provider when `config` is None. Closes the HTTP client and the cache on exit.

    `retry_failed` asks again for items parked in the cache by an earlier run (see cache.py); by default
    they are reported as failed without a request."""
    if config is None:
        provider: Provider = OfflineProvider()
        try:
            yield provider
        finally:
            await provider.aclose()
        return
    cache = ResponseCache(cache_path) if cache_path is not None else None
    provider = EndpointProvider(config, cache=cache, retry_failed=retry_failed, seed=seed)
    try:
        yield provider
    finally:
        await provider.aclose()
        if cache is not None:
            cache.close()


def run_captions(items: Mapping[str, CaptionInput], *, config: LLMConfig | None, cache_path: Path | None = None,
                 retry_failed: bool = False) -> BatchResult[Caption]:
    """Synchronous `caption_batch` in a fresh event loop (for asset bodies; not inside a running loop).

    Raises:
        EndpointUnreachable: the endpoint answered nothing (one message for the whole batch).
    """
    async def main() -> BatchResult[Caption]:
        async with open_provider(config, cache_path=cache_path, retry_failed=retry_failed) as provider:
            return await provider.caption_batch(items)
    return asyncio.run(main())


def run_chunk_synthesis(items: Mapping[str, ChunkInput], *, config: LLMConfig | None, cache_path: Path | None = None,
                        retry_failed: bool = False) -> BatchResult[ChunkSynthesis]:
    """Synchronous `synthesize_batch` in a fresh event loop (for asset bodies; not inside a running loop).

    Raises:
        EndpointUnreachable: the endpoint answered nothing (one message for the whole batch).
    """
    async def main() -> BatchResult[ChunkSynthesis]:
        async with open_provider(config, cache_path=cache_path, retry_failed=retry_failed) as provider:
            return await provider.synthesize_batch(items)
    return asyncio.run(main())


def run_embeddings(texts: Sequence[str], *, config: LLMConfig, cache_path: Path | None = None) -> list[list[float]]:
    """Synchronous `embed` in a fresh event loop.

    Raises:
        EmbeddingsUnavailable: `config` has no embedding model.
        LLMError: a request failed for good.
    """
    async def main() -> list[list[float]]:
        async with open_provider(config, cache_path=cache_path) as provider:
            return await provider.embed(texts)
    return asyncio.run(main())
