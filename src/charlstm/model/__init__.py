"""The network: CharLSTM, its selectable-gate LSTM, the single-step path, the loss helper."""
