"""The LLM layer: an OpenAI-compatible client (bounded, rate-limited, retried, validated, cached), the
caption and chunk-synthesis tasks, the offline stand-in provider, and a loopback server for tests.

Typical use from an asset (see provider.py for the async form):

    config = LLMConfig.from_env()                      # None when CLARA_LLM_BASE_URL is unset -> offline
    result = run_chunk_synthesis({chunk_id: ChunkInput(text, lang, n_pairs=5) for ...},
                                 config=config, cache_path=store.llm_cache_path)  # storage.ArtifactStore
    result.outputs[chunk_id].qa_pairs; result.failures; result.metadata(); result.raise_if_failures_exceed(0.1)

Importing this package starts nothing and reads no environment; the loopback server lives in
`clara_pipeline.llm.loopback` and is not imported here.
"""

from .batch import BatchFailed, BatchResult
from .breaker import EndpointUnreachable
from .cache import ResponseCache
from .client import EmbeddingsUnavailable, LLMClient
from .config import LLMConfig, LLMConfigError
from .errors import FailureKind, ItemFailure, LLMError
from .offline import OFFLINE_NOTE, OfflineProvider
from .provider import EndpointProvider, Provider, open_provider, run_captions, run_chunk_synthesis, run_embeddings
from .tasks import (CAPTION, CAPTION_PROMPT_VERSION, CHUNK_SYNTHESIS, SYNTHESIS_PROMPT_VERSION, Caption,
                    CaptionInput, CaptionTask, ChunkInput, ChunkSynthesis, ChunkSynthesisTask, QAPair, render_caption)
from .usage import UsageStats
from .vision import ImageRejected, PreparedImage, VisionLimits, prepare_image

__all__ = [
    "BatchFailed", "BatchResult", "CAPTION", "CAPTION_PROMPT_VERSION", "CHUNK_SYNTHESIS",
    "SYNTHESIS_PROMPT_VERSION", "Caption", "CaptionInput", "CaptionTask", "ChunkInput", "ChunkSynthesis",
    "ChunkSynthesisTask", "EmbeddingsUnavailable", "EndpointProvider", "EndpointUnreachable", "FailureKind", "ImageRejected",
    "ItemFailure", "LLMClient", "LLMConfig", "LLMConfigError", "LLMError", "OFFLINE_NOTE", "OfflineProvider",
    "PreparedImage", "Provider", "QAPair", "ResponseCache", "UsageStats", "VisionLimits", "open_provider",
    "prepare_image", "render_caption", "run_captions", "run_chunk_synthesis", "run_embeddings",
]
