"""Run folders and checkpoints: the only reader and writer of files a run keeps."""
