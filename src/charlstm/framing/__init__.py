"""How text becomes training examples and how a model reads text: stream or window framing."""
