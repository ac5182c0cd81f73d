"""Resources: where raw documents and artifacts live, and the extraction settings."""


import os
from pathlib import Path

import dagster as dg

from ..ingest import ExtractionConfig, ImageLimits, PdfOptions
from ..llm import LLMConfig
from ..llm import config as llm_env
from ..ingest.rawfiles import MB, RawFilePolicy
from ..ingest.sources import SourceNotFound, find_source
from ..settings import Settings
from ..storage import ArtifactStore


class RawDataFolder(dg.ConfigurableResource):
    """The folder users drop documents into (`CLARA_RAW_DATA`), and what may be read from it."""

    path: str
    allow_links: bool = False  # read symbolic links whose target lies inside the folder (CLARA_ALLOW_LINKS_INSIDE_RAW)
    max_file_mb: float = 200.0  # a PDF, DOCX or image larger than this is not read (CLARA_MAX_FILE_MB)
    max_text_mb: float = 32.0  # a .txt / .md larger than this is not read (CLARA_MAX_TEXT_MB)
    max_archive_mb: float = 1024.0  # memory a DOCX may take once inflated and parsed (CLARA_MAX_ARCHIVE_MB)
    max_remove_share: float = 0.5  # more documents gone than this share: none removed (CLARA_MAX_REMOVE_SHARE)

    @property
    def root(self) -> Path:
        return Path(self.path)

    def policy(self) -> RawFilePolicy:
        return RawFilePolicy(allow_links=self.allow_links, max_file_bytes=int(self.max_file_mb * MB),
                             max_text_bytes=int(self.max_text_mb * MB),
                             max_archive_memory_bytes=int(self.max_archive_mb * MB))

    def locate(self, partition_key: str) -> tuple[Path, str]:
        """Returns (file, sha256) for a document partition, or fails the step naming the cause."""
        try:
            return find_source(self.root, partition_key, allow_links=self.allow_links)
        except SourceNotFound as exc:
            raise dg.Failure(description=str(exc), metadata={"partition": partition_key, "raw_data": str(self.root)},
                             allow_retries=False) from None


class ArtifactStoreResource(dg.ConfigurableResource):
    """The root folder of everything the pipeline writes (`CLARA_ARTIFACTS`)."""

    path: str

    def store(self) -> ArtifactStore:
        """The store, after finishing any set of files a crash left half-published (storage.Publication)."""
        store = ArtifactStore(Path(self.path))
        store.recover()
        return store


class ExtractionSettings(dg.ConfigurableResource):
    """Which embedded images are kept, and PDF layout options."""

    icon_max_side: int = 64
    min_side: int = 16
    max_aspect_ratio: float = 12.0
    max_pixels: int = 64_000_000
    repeated_image_pages: int = 3
    detect_tables: bool = True

    def config(self) -> ExtractionConfig:
        return ExtractionConfig(
            images=ImageLimits(icon_max_side=self.icon_max_side, min_side=self.min_side,
                               max_aspect_ratio=self.max_aspect_ratio, max_pixels=self.max_pixels),
            pdf=PdfOptions(repeated_image_pages=self.repeated_image_pages, detect_tables=self.detect_tables),
        )


class LLMResource(dg.ConfigurableResource):
    """The OpenAI-compatible endpoint for captions and QA synthesis; no `base_url` means the offline provider.

    Built from the CLARA_LLM_* variables (see clara_pipeline.llm.config); the key is passed as an EnvVar, so
    Dagster shows its name, never its value.
    """

    base_url: str = ""
    api_key: str = ""
    model: str = llm_env.DEFAULT_MODEL
    vlm_model: str = ""
    embedding_model: str = ""
    max_concurrency: int = 8
    requests_per_minute: float = 600.0  # 0: no client-side limit
    timeout_s: float = 60.0
    max_retries: int = 6
    max_reasks: int = 2
    temperature: float = -1.0  # < 0: each task's own (captions 0.2, QA synthesis 0.7)
    price_input_per_1m: float = -1.0  # USD per 1M prompt tokens, for the cost in metadata; < 0: unknown
    price_output_per_1m: float = -1.0

    @property
    def offline(self) -> bool:
        return not self.base_url

    def config(self) -> LLMConfig | None:
        if self.offline:
            return None
        return LLMConfig(base_url=self.base_url, api_key=self.api_key, model=self.model,
                         vlm_model=self.vlm_model or None, embedding_model=self.embedding_model or None,
                         max_concurrency=self.max_concurrency, requests_per_minute=self.requests_per_minute or None,
                         timeout_s=self.timeout_s, max_retries=self.max_retries, max_reasks=self.max_reasks,
                         temperature=self.temperature if self.temperature >= 0 else None,
                         price_input_per_1m=self.price_input_per_1m if self.price_input_per_1m >= 0 else None,
                         price_output_per_1m=self.price_output_per_1m if self.price_output_per_1m >= 0 else None)

    @classmethod
    def from_env(cls, environ=None) -> "LLMResource":
        """Reads and validates the CLARA_LLM_* variables (LLMConfigError names a bad one)."""
        env = os.environ if environ is None else environ
        config = LLMConfig.from_env(env)
        if config is None:
            return cls()
        key_var = next((v for v in (llm_env.ENV_API_KEY, llm_env.ENV_OPENAI_API_KEY) if env.get(v)), None)
        return cls(base_url=config.base_url, api_key=dg.EnvVar(key_var) if key_var else "", model=config.model,
                   vlm_model=config.vlm_model or "", embedding_model=config.embedding_model or "",
                   max_concurrency=config.max_concurrency, requests_per_minute=config.requests_per_minute or 0.0,
                   timeout_s=config.timeout_s, max_retries=config.max_retries, max_reasks=config.max_reasks,
                   temperature=-1.0 if config.temperature is None else config.temperature,
                   price_input_per_1m=-1.0 if config.price_input_per_1m is None else config.price_input_per_1m,
                   price_output_per_1m=-1.0 if config.price_output_per_1m is None else config.price_output_per_1m)


class SynthesisSettings(dg.ConfigurableResource):
    """Captioning, chunking, QA synthesis and dataset settings (the knobs a user tunes per corpus)."""

    max_failed_caption_share: float = 0.5  # a document fails when more of its figures than this fail
    max_failed_chunk_share: float = 0.2  # synthesis fails when more chunks than this fail
    qa_pairs_per_chunk: int = 5  # asked of the LLM (3..8); curation may keep fewer
    top_k: int = 5  # documents per stage-2 row (generation_top_k)
    candidates: int = 20  # candidates per stage-3 row (N >= top_k)
    held_out_fraction: float = 0.1  # questions kept out of every training file, for evaluation
    seed: int = 0
    base_model: str = "tiny"  # whose tokenizer cuts chunks ("tiny": Qwen3's real tokenizer, as Qwen3-4B's)
    doc_max_length: int = 256  # tokens per chunk: CLaRa's document window
    chunk_overlap_tokens: int = 32
    # Ask the LLM again for figures and chunks whose answers failed validation in an earlier run (they are
    # parked, not paid for again, by default); `clara run --retry-failed` sets it.
    retry_failed: bool = False

    def dataset_config(self):
        from ..datasets import DatasetConfig

        if self.candidates < self.top_k:
            raise ValueError(f"SynthesisSettings.candidates ({self.candidates}) must be >= top_k ({self.top_k})")
        return DatasetConfig(seed=self.seed, held_out_fraction=self.held_out_fraction)

    def chunking(self):
        from ..corpus.chunking import ChunkingConfig

        return ChunkingConfig(max_tokens=self.doc_max_length, overlap_tokens=self.chunk_overlap_tokens)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "raw_data": RawDataFolder(path=str(settings.raw_data), allow_links=settings.allow_links_inside_raw,
                                  max_file_mb=settings.max_file_mb, max_text_mb=settings.max_text_mb,
                                  max_archive_mb=settings.max_archive_mb, max_remove_share=settings.max_remove_share),
        "artifacts": ArtifactStoreResource(path=str(settings.artifacts)),
        "extraction": ExtractionSettings(),
        "llm": LLMResource.from_env(),
        "synthesis": SynthesisSettings(),
    }
