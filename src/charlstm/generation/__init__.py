"""Generation: sampling from logits, the generators, the interactive loop."""
