"""Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020): the k-NN manifold
math on point sets small enough to check by hand, and against a brute-force loop on random ones."""
import itertools
import math

import pytest
import torch

from vae_cli.evaluation.manifold import knn_radii, manifold_scores


def brute_force(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict:
    """The papers' definitions written as plain loops over pairs."""
    def dist(a, b):
        return math.dist(a.tolist(), b.tolist())

    def radius(points, i):
        return sorted(dist(points[i], points[j]) for j in range(len(points)) if j != i)[k - 1]

    r = [radius(real, i) for i in range(len(real))]
    s = [radius(fake, j) for j in range(len(fake))]
    held = [[dist(f, x) <= r[i] for i, x in enumerate(real)] for f in fake]  # fake j inside real ball i
    return {"precision": sum(any(row) for row in held) / len(fake),
            "recall": sum(any(dist(x, f) <= s[j] for j, f in enumerate(fake)) for x in real) / len(real),
            "density": sum(map(sum, held)) / (k * len(fake)),
            "coverage": sum(any(held[j][i] for j in range(len(fake))) for i in range(len(real))) / len(real)}


def test_hand_checked_line():
    """Real points 0, 1, 2, 3 on a line, k=1: every real radius is 1 (the nearest other point).
    Fake points 0.5 (inside the balls of 0 and 1), 10 and 11 (far away; their own radii are 1).
    precision: 1 of 3 fakes inside a real ball; recall: no real point within 1 of 10 or 11, and the fake 0.5 has
    radius 9.5 (its nearest other fake is 10), so reals 0..3 are all inside its ball -> 4/4;
    density: the fake 0.5 sits in 2 balls (of 0 and of 1) -> 2 / (1 * 3); coverage: reals 0 and 1 hold a fake."""
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0], [11.0]])
    assert knn_radii(real, 1).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert knn_radii(fake, 1).tolist() == [9.5, 1.0, 1.0]
    got = manifold_scores(real, fake, k=1)
    assert got == {"precision": pytest.approx(1 / 3), "recall": 1.0, "density": pytest.approx(2 / 3),
                   "coverage": 0.5, "nearest_k": 1}


def test_hand_checked_square_separates_sharp_from_blurry():
    """Real: the 4 corners of the unit square, k=2 -> radius 1 (the two neighbours along the edges).
    'Sharp but misses modes': fakes piled just outside one corner -> precision 1, coverage 1/4, recall 0 (their
    own balls, radius 0.01, reach no corner).
    'Blurry but covers': fakes at the centre -> each at distance 0.707 <= 1 from every corner: precision 1,
    density 4/2 = 2 (each fake in all 4 balls, / k), coverage 1."""
    real = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    sharp = -torch.tensor([[0.01, 0.01], [0.02, 0.01], [0.01, 0.02], [0.02, 0.02]])
    centre = torch.full((4, 2), 0.5) + torch.tensor([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01], [0.01, 0.01]])
    s = manifold_scores(real, sharp, k=2)
    assert (s["precision"], s["coverage"], s["recall"], s["density"]) == (1.0, 0.25, 0.0, 0.5)
    c = manifold_scores(real, centre, k=2)
    assert (c["precision"], c["coverage"], c["density"]) == (1.0, 1.0, 2.0)
    assert c["recall"] == 0.0  # the centre's own balls (radius 0.01) reach no corner


@pytest.mark.parametrize("k,n,m", [(1, 7, 9), (3, 20, 15), (5, 30, 40)])
def test_matches_brute_force_on_random_points_in_chunks(k, n, m):
    g = torch.Generator().manual_seed(k)
    real = torch.randn(n, 3, generator=g, dtype=torch.float64)
    fake = torch.randn(m, 3, generator=g, dtype=torch.float64) * 1.3 + 0.4
    want = brute_force(real, fake, k)
    for chunk in (4, 1024):  # several chunks, and one
        got = manifold_scores(real, fake, k=k, chunk=chunk)
        assert {key: got[key] for key in want} == pytest.approx(want)


def test_identical_sets_score_one_and_too_few_points_are_nan():
    points = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    same = manifold_scores(points, points.clone(), k=5)
    assert (same["precision"], same["recall"], same["coverage"]) == (1.0, 1.0, 1.0) and same["density"] >= 1.0
    few = manifold_scores(points[:5], points, k=5)
    assert all(math.isnan(few[key]) for key in ("precision", "recall", "density", "coverage"))
    with pytest.raises(ValueError, match="more than 5 points"):
        knn_radii(points[:5], 5)


def test_brute_force_radius_excludes_the_point_itself():
    """The helper above agrees with knn_radii on every point of a small set (k = 1 .. 3)."""
    pts = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [6.0, 8.0]], dtype=torch.float64)
    for k, i in itertools.product((1, 2, 3), range(4)):
        others = sorted(math.dist(pts[i].tolist(), pts[j].tolist()) for j in range(4) if j != i)
        assert float(knn_radii(pts, k)[i]) == pytest.approx(others[k - 1])
