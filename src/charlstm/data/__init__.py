"""Text in: cleaning, sources (files, folders, encodings), the vocabulary, prepared token files, batches."""
