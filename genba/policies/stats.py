"""Success-rate statistics for `genba eval`: one rate's interval, two policies compared on the same seeds, and how
well one evaluator's rates rank policies as another's do (`genba eval-ranking`).

    from genba.policies.stats import compare_paired, wilson_interval

    wilson_interval(17, 20)  # (0.640, 0.948): the 95% score interval of 17 successes in 20
    paired = compare_paired([True, True, False, True], [True, False, False, False])  # seed by seed
    paired["diff"], paired["ci95"], paired["p_value"]  # 0.5, [-0.1355, 0.7891], 0.5

Wilson's score interval stays inside [0, 1] and is honest at 0% and 100%, where the normal approximation collapses to
a point. Two policies run on the same seeds give paired outcomes: per seed, both succeed (a), only the first (b),
only the second (c) or neither (d). The difference of their rates, (b - c) / n, gets Newcombe's method 10 interval
(Newcombe 1998, "Improved confidence intervals for the difference between binomial proportions based on paired
data", Statistics in Medicine 17: the two Wilson intervals combined, corrected for the correlation of the pairs),
and the p-value is the exact McNemar test: a two-sided binomial test of b successes in b + c trials at 1/2. Pairing
is what makes small evaluations decisive: seeds both policies solve, or both fail, carry no information about
which is better, and the test looks only at the others.

Ranking agreement between two evaluators' rates over the same policies (x: the reference, MuJoCo; y: the candidate,
the world model): `pearson_r` (linear), `spearman_r` (Pearson's r of the ranks, ties given their mean rank, as
scipy.stats.spearmanr), both None when either side is constant; and `mmrv`, the mean maximum rank violation of
SIMPLER (Li et al. 2024, "Evaluating Real-World Robot Manipulation Policies in Simulation", eq. 1):
RankViolation(i, j) = |x_i - x_j| * 1[(y_i > y_j) != (x_i > x_j)], MMRV = mean over i of max over j. Each policy
costs its worst mis-ordering, weighted by how far apart the reference puts the pair: 0 is a perfect ranking, and
swapping two policies the reference finds nearly equal costs little.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959964  # the standard normal's 97.5% quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a success rate; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_paired_interval(a: int, b: int, c: int, d: int, z: float = Z95) -> tuple[float, float]:
    """95% interval of p1 - p2 = (b - c) / n for paired outcomes (method 10 of Newcombe 1998).

    a: both succeed, b: only the first, c: only the second, d: neither; p1 = (a + b) / n, p2 = (a + c) / n.
    """
    n = a + b + c + d
    if n == 0:
        return -1.0, 1.0
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, z)
    l2, u2 = wilson_interval(a + c, n, z)
    # phi, the correlation of the pairs, with Newcombe's correction: a positive association shrunk by n/2
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    ad_bc = a * d - b * c
    corrected = ad_bc - n / 2 if ad_bc > n / 2 else min(ad_bc, 0)
    phi = corrected / math.sqrt(margins) if margins > 0 else 0.0
    lower = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    upper = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    diff = p1 - p2
    return max(-1.0, diff - math.sqrt(max(lower, 0.0))), min(1.0, diff + math.sqrt(max(upper, 0.0)))


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b successes in b + c fair coin flips, doubled tail (1.0 when b + c = 0)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))  # exact integers: no rounding in the tail
    return min(1.0, 2 * tail / 2**n)


def compare_paired(first: Sequence[bool], second: Sequence[bool]) -> dict:
    """Paired comparison of two policies' outcomes on the same seeds (first[i] and second[i]: seed i).

    Returns diff (rate of first - rate of second), ci95 (Newcombe), p_value (exact McNemar), and the table:
    both, first_only, second_only, neither."""
    if len(first) != len(second):
        raise ValueError(f"paired outcomes need the same seeds: {len(first)} != {len(second)} episodes")
    pairs = [(bool(x), bool(y)) for x, y in zip(first, second, strict=True)]
    a = sum(x and y for x, y in pairs)
    b = sum(x and not y for x, y in pairs)
    c = sum(y and not x for x, y in pairs)
    d = len(pairs) - a - b - c
    low, high = newcombe_paired_interval(a, b, c, d)
    return {
        "diff": (b - c) / len(pairs) if pairs else 0.0,
        "ci95": [round(low, 4), round(high, 4)],
        "p_value": mcnemar_exact_p(b, c),
        "both": a,
        "first_only": b,
        "second_only": c,
        "neither": d,
    }


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's correlation of x and y; None when either is constant (undefined) or there are fewer than 2."""
    if len(x) != len(y):
        raise ValueError(f"correlation needs pairs: {len(x)} != {len(y)} values")
    n = len(x)
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    if sxx <= 0 or syy <= 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank ([0.5, 0.1, 0.5] -> [2.5, 1.0, 2.5])."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            out[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return out


def spearman_r(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's r of the mid-ranks); None when either side is constant."""
    if len(x) != len(y):
        raise ValueError(f"correlation needs pairs: {len(x)} != {len(y)} values")
    return pearson_r(ranks(x), ranks(y))


def mmrv(reference: Sequence[float], candidate: Sequence[float]) -> float:
    """SIMPLER's mean maximum rank violation of `candidate`'s rates against `reference`'s (module docstring)."""
    if len(reference) != len(candidate):
        raise ValueError(f"rank violations need pairs: {len(reference)} != {len(candidate)} values")
    if not reference:
        return 0.0
    worst = [
        max(
            (abs(ri - rj) for rj, cj in zip(reference, candidate, strict=True) if (ci > cj) != (ri > rj)),
            default=0.0,
        )
        for ri, ci in zip(reference, candidate, strict=True)
    ]
    return sum(worst) / len(worst)
