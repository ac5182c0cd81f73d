"""The corpus: enriched documents cut into token-bounded chunks, and the manifest of live documents."""
