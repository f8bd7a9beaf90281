"""genlab's random labels in your own training loop.

``genlab.RandomizedDataset`` gives the very labels a genlab run with the same seed trains on;
this plain PyTorch loop fits them with an MLP on scikit-learn's 8x8 digits (offline, about
20 s on two CPU cores). Run: python examples/plain_pytorch_loop.py
"""

import torch
from torch import nn

import genlab


def main(epochs: int = 80, seed: int = 0) -> float:
    torch.manual_seed(seed)
    train = genlab.RandomizedDataset("digits", "random-labels", seed=seed)
    print(f"{int(train.changed.sum())} of {len(train)} labels changed")
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 1024), nn.ReLU(), nn.Linear(1024, 10))
    # Adam memorizes fast; SGD does too, in more epochs
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    with torch.no_grad():
        x = torch.stack([train[i][0] for i in range(len(train))])
        acc = float((model(x).argmax(1) == train.y).float().mean())
    print(f"training accuracy on random labels after {epochs} epochs: {acc:.3f}")
    return acc


if __name__ == "__main__":
    main()
