"""Resources: where raw documents and artifacts live, and the extraction settings."""


from pathlib import Path

import dagster as dg

from ..ingest import ExtractionConfig, ImageLimits, PdfOptions
from ..ingest.sources import SourceNotFound, find_source
from ..settings import Settings
from ..storage import ArtifactStore


class RawDataFolder(dg.ConfigurableResource):
    """The folder users drop documents into (`CLARA_RAW_DATA`)."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path)

    def locate(self, partition_key: str) -> tuple[Path, str]:
        """Returns (file, sha256) for a document partition, or fails the step naming the cause."""
        try:
            return find_source(self.root, partition_key)
        except SourceNotFound as exc:
            raise dg.Failure(description=str(exc), metadata={"partition": partition_key, "raw_data": str(self.root)},
                             allow_retries=False) from None


class ArtifactStoreResource(dg.ConfigurableResource):
    """The root folder of everything the pipeline writes (`CLARA_ARTIFACTS`)."""

    path: str

    def store(self) -> ArtifactStore:
        return ArtifactStore(Path(self.path))


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


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "raw_data": RawDataFolder(path=str(settings.raw_data)),
        "artifacts": ArtifactStoreResource(path=str(settings.artifacts)),
        "extraction": ExtractionSettings(),
    }
