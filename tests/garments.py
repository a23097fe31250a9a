"""A yardstick for "recognisable garments": a small classifier trained on Fashion-MNIST labels.

Generated images are scored by (a) how many of the 10 classes the classifier sees among them,
(b) its mean confidence, and (c) the Frechet distance between the classifier's hidden features of
generated and real test images (an FID in a 128-d feature space that knows garments).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch import nn


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28[, 1]) -> float (N, 784) in [-1, 1]."""
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 127.5 - 1)


class GarmentJudge:
    def __init__(self, folder: Path, seed: int = 0):
        torch.manual_seed(seed)
        x = _to_input(read_idx(folder / "train-images-idx3-ubyte.gz"))
        y = torch.from_numpy(read_idx(folder / "train-labels-idx1-ubyte.gz").astype(np.int64))
        self.features = nn.Sequential(nn.Linear(784, 256), nn.ReLU(),
                                      nn.Linear(256, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)
        net = nn.Sequential(self.features, self.head)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        for _ in range(3):  # epochs
            for idx in torch.randperm(len(x)).split(256):
                loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        test_x = read_idx(folder / "t10k-images-idx3-ubyte.gz")
        test_y = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
        with torch.no_grad():
            self.accuracy = (self.head(self.features(_to_input(test_x))).argmax(1).numpy()
                             == test_y).mean()
        self.real_stats = self._stats(test_x)

    @torch.no_grad()
    def _stats(self, images):
        f = self.features(_to_input(images)).double().numpy()
        return f.mean(0), np.cov(f, rowvar=False)

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> np.ndarray:
        """The class the classifier sees in each uint8 (N, 28, 28[, 1]) image, (N,) int."""
        return self.head(self.features(_to_input(images))).argmax(1).numpy()

    @torch.no_grad()
    def score(self, images: np.ndarray) -> dict:
        """images: uint8 (N, 28, 28, 1)."""
        probs = torch.softmax(self.head(self.features(_to_input(images))), 1).numpy()
        counts = np.bincount(probs.argmax(1), minlength=10)
        mu, cov = self._stats(images)
        mu_r, cov_r = self.real_stats
        return {"classes": int((counts >= 0.02 * len(images)).sum()),
                "confidence": float(probs.max(1).mean()),
                "frechet": _frechet(mu, cov, mu_r, cov_r), "counts": counts.tolist()}


def _frechet(mu1, c1, mu2, c2) -> float:
    # trace sqrt(c1 c2) via the eigenvalues of sqrt(c1) c2 sqrt(c1), which are real and >= 0
    w, v = np.linalg.eigh(c1)
    s1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.linalg.eigvalsh(s1 @ c2 @ s1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2)
                 - 2 * np.sqrt(np.clip(eig, 0, None)).sum())
