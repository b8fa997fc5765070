"""A run directory: its layout, its manifest (``llmclf.json``), its weights."""
