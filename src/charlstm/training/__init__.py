"""Training: sessions (start, resume), the loop, checkpoint policy, evaluation schedule, processes."""
