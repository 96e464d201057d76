"""The Jigsaw BiLSTM as a PyTorch module (imported only when the scorer is loaded: it imports torch).

Keras original (toxic_classifier/model.py): Embedding(vocab, dim) -> Bidirectional(LSTM(units,
return_sequences=True)) -> GlobalMaxPooling1D -> Dense(hidden, relu) -> Dropout -> Dense(labels, sigmoid).
The Keras Embedding does not mask zeros (mask_zero defaults to False), so the LSTM runs over the leading pad ids
like over any other token; this module does the same. Dropout is inactive at inference and is left out.
"""

from __future__ import annotations

import torch
from torch import nn


class BiLSTMToxicNet(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, units: int, hidden: int, n_labels: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, units, batch_first=True, bidirectional=True)
        self.hidden = nn.Linear(2 * units, hidden)
        self.out = nn.Linear(hidden, n_labels)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> BiLSTMToxicNet:
        """Build a net whose sizes are read off the tensors, then load them (strictly)."""
        vocab_size, embed_dim = state["embedding.weight"].shape
        units = state["lstm.weight_hh_l0"].shape[1]
        hidden = state["hidden.weight"].shape[0]
        n_labels = state["out.weight"].shape[0]
        net = cls(int(vocab_size), int(embed_dim), int(units), int(hidden), int(n_labels))
        net.load_state_dict(state, strict=True)
        return net.eval()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids)  # (batch, time, embed_dim)
        x, _ = self.lstm(x)  # (batch, time, 2 * units): forward and backward states, concatenated
        x = x.max(dim=1).values  # (batch, 2 * units): global max pool over time
        x = torch.relu(self.hidden(x))  # (batch, hidden)
        return torch.sigmoid(self.out(x))  # (batch, n_labels)
