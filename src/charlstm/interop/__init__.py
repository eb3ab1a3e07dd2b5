"""Other tools' formats: the Keras tutorial's checkpoints in; ONNX, safetensors and a Hub folder out."""
