"""QA synthesis over the corpus: curating the LLM's pairs (support, self-containment, deduplication)."""
