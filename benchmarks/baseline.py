"""The pytorch/examples VAE recipe, written out as the benchmark's baseline (examples/vae/main.py):
torchvision MNIST + ToTensor through a DataLoader, 784-400-20 MLP, batch 128, Adam 1e-3, summed BCE + KL,
`loss.item()` every batch. Only the evaluation pass and the printing are left out.
"""
import time

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import datasets, transforms


class ExampleVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def train_loader(root: str, device: torch.device) -> torch.utils.data.DataLoader:
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    dataset = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    return torch.utils.data.DataLoader(dataset, batch_size=128, shuffle=True, **kwargs)


def train_epochs(root: str, device: torch.device, epochs: int) -> list[tuple[int, float]]:
    """Train a fresh model; returns (examples, seconds) per epoch."""
    torch.manual_seed(1)
    model = ExampleVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader, out = train_loader(root, device), []
    for _ in range(epochs):
        model.train()
        train_loss, tick = 0.0, time.perf_counter()
        for data, _ in loader:
            data = data.to(device)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        out.append((len(loader.dataset), time.perf_counter() - tick))
    return out


def main() -> None:
    """`python benchmarks/baseline.py --epochs 2`: the recipe as a whole process (benchmarks/versus_baseline.py)."""
    import argparse

    from vae_cli.data import _install_bundled_mnist, data_root

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    root = data_root(None)
    _install_bundled_mnist(root)
    for n, s in train_epochs(str(root), torch.device(args.device), args.epochs):
        print(f"{n / s:.0f} ex/s")


if __name__ == "__main__":
    main()
