"""Other tools' formats: the Keras tutorial's checkpoints in, ONNX and safetensors out."""
