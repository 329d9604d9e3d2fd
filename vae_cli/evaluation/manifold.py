"""k-nearest-neighbour manifold scores of generated samples against real data, in a feature space.

Each real point i gets a ball of radius r_i = the distance to its k-th nearest real neighbour (itself not
counted); the balls' union estimates the real manifold. Likewise s_j for the generated points.
  precision = share of generated points inside some real ball           (Kynkäänniemi et al. 2019)
  recall    = share of real points inside some generated ball           (Kynkäänniemi et al. 2019)
  density   = mean number of real balls holding a generated point, / k  (Naeem et al. 2020; may exceed 1)
  coverage  = share of real balls holding at least one generated point  (Naeem et al. 2020)
All four: higher is better, in [0, 1] (density: [0, N/k]). "Inside" means at a distance <= the radius.
Sharp samples that miss modes: high precision, low recall; blurry samples that cover the data: the reverse.
The radii shrink as N grows, so compare scores computed with the same N, M and k only.
"""
import torch

NEAREST_K = 5  # Naeem et al.'s recommended k for all four


def knn_radii(points: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """points (N, F) -> (N,) the distance from each point to its k-th nearest other point."""
    if len(points) <= k:
        raise ValueError(f"k={k} nearest neighbours need more than {k} points; got {len(points)}")
    out = [torch.cdist(block, points).topk(k + 1, dim=1, largest=False).values[:, k]  # column 0: itself
           for block in points.split(chunk)]
    return torch.cat(out)


@torch.no_grad()
def manifold_scores(real: torch.Tensor, fake: torch.Tensor, k: int = NEAREST_K, chunk: int = 1024) -> dict:
    """real (N, F), fake (M, F) features -> precision, recall, density, coverage (and k). Memory ~ chunk * N.
    With k or fewer points on a side the radii are undefined: NaN scores (written as null)."""
    if min(len(real), len(fake)) <= k:
        return {**dict.fromkeys(("precision", "recall", "density", "coverage"), float("nan")), "nearest_k": k}
    r_real, r_fake = knn_radii(real, k, chunk), knn_radii(fake, k, chunk)
    inside_real = torch.zeros(len(fake), dtype=torch.long, device=real.device)  # real balls holding fake j
    recalled = torch.zeros(len(real), dtype=torch.bool, device=real.device)  # real i inside some fake ball
    nearest = torch.full((len(real),), torch.inf, dtype=real.dtype, device=real.device)  # real i to its closest fake
    for start in range(0, len(fake), chunk):
        d = torch.cdist(fake[start : start + chunk], real)  # (c, N)
        inside_real[start : start + chunk] = (d <= r_real).sum(1)
        recalled |= (d <= r_fake[start : start + chunk, None]).any(0)
        nearest = torch.minimum(nearest, d.amin(0))
    covered = nearest <= r_real
    return {"precision": float((inside_real > 0).float().mean()), "recall": float(recalled.float().mean()),
            "density": float(inside_real.float().mean() / k), "coverage": float(covered.float().mean()),
            "nearest_k": k}
