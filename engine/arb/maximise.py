"""The 1-D maximisers of the opportunity search (engine/arb/search.py): exact integer functions
(the profit of a cycle at input x, in wei), unimodal over the range searched.

    neighbourhood   the best of x0-k .. x0+k (the floors make the top flat to within wei)
    bracket         three points around an estimate, the middle one the highest, found by walking
    parabolic_max   successive parabolic interpolation inside a bracket, golden steps as fallback
    golden_max      golden-section search, widening the window while the top sits on its edge

Integer arithmetic throughout: every f(x) is the exact profit, so the point found is a real
input the chain will price the same way.  Nothing here knows pools or routes.
"""
from __future__ import annotations

import math

INV_PHI = (math.sqrt(5) - 1) / 2
BRACKET = 0.005    # the golden search's first window: ±0.5 % around the virtual-pool estimate


def neighbourhood(f, x0: int, k: int, known: tuple[int, int] | None = None) -> tuple[int, int]:
    """Best of f over x0-k .. x0+k (exact): the floors make the top flat to within wei."""
    best_x, best = known if known else (x0, f(x0))
    for x in range(max(1, x0 - k), x0 + k + 1):
        if x == best_x:
            continue
        v = f(x)
        if v > best:
            best_x, best = x, v
    return best_x, best


def golden_max(f, lo: int, hi: int, cap: int, rel_tol: float) -> tuple[int, int]:
    """Maximum of a unimodal integer function: widen [lo, hi] while the top is on an edge,
    then golden-section until the bracket is within rel_tol of its centre."""
    lo = max(1, lo)
    hi = max(lo + 2, min(hi, cap))
    # widen upward while f still rises at the upper edge
    while hi < cap and f(hi) > f(hi - max(1, hi // 1000)):
        lo, hi = hi // 2, min(cap, hi * 4)
    return golden_section(f, lo, hi, rel_tol)


def bracket(f, x: int, cap: int, max_walk: int = 12):
    """Three points lo < mid < hi around x with f(mid) >= f(lo), f(hi) and f(mid) > 0, found
    by walking from x ± BRACKET·x toward the higher side (the step doubles); None if the
    profit is not positive there or the walk hits 1, cap or max_walk."""
    step = max(1, int(x * BRACKET))
    lo, mid, hi = max(1, x - step), x, min(cap, x + step)
    if not lo < mid < hi:
        return None
    fm = f(mid)
    if fm <= 0:
        return None
    fl, fh = f(lo), f(hi)
    for _ in range(max_walk):
        if fm >= fl and fm >= fh:
            return (lo, fl), (mid, fm), (hi, fh)
        step *= 2
        if fh > fm:                  # the top is above: move up
            lo, fl, mid, fm = mid, fm, hi, fh
            hi = min(cap, mid + step)
            if hi <= mid:
                return None
            fh = f(hi)
        else:                        # the top is below
            hi, fh, mid, fm = mid, fm, lo, fl
            lo = max(1, mid - step)
            if lo >= mid:
                return None
            fl = f(lo)
    return None


def parabolic_max(f, left: tuple[int, int], mid: tuple[int, int], right: tuple[int, int],
                   rel_tol: float, max_steps: int = 6) -> tuple[int, int]:
    """Maximum of a unimodal integer function bracketed by left < mid < right (f(mid) at least
    both ends): successive parabolic interpolation (the profit is all but a parabola near its
    top, so one or two steps land within rel_tol), a golden step whenever the parabola's vertex
    falls outside the bracket.  Exact integer arithmetic throughout."""
    (a, fa), (b, fb), (c, fc) = left, mid, right
    for step in range(max_steps):
        if c - a <= 2:
            break
        num = (b - a) ** 2 * (fb - fc) - (b - c) ** 2 * (fb - fa)
        den = (b - a) * (fb - fc) - (b - c) * (fb - fa)
        x = b - num // (2 * den) if den else b
        if not a < x < c or x == b:    # no usable vertex: a golden step into the wider side
            x = b + int((c - b) * (1 - INV_PHI)) if c - b > b - a else b - int((b - a) * (1 - INV_PHI))
            if not a < x < c or x == b:
                break
        fx = f(x)
        # done when the vertex hardly moved, or when the first one (of a parabola through
        # three points ±BRACKET apart: off by ~BRACKET³ where the profit is smooth) tops the
        # middle point
        done = abs(x - b) <= max(1, int(rel_tol * b)) or (step == 0 and fx >= fb)
        if fx >= fb:
            if x < b:
                c, fc = b, fb
            else:
                a, fa = b, fb
            b, fb = x, fx
        elif x < b:
            a, fa = x, fx
        else:
            c, fc = x, fx
        if done:
            return b, fb
    if c - a > max(2, int(rel_tol * b)):    # a kink (a tick crossed): finish as golden would
        x, fx = golden_section(f, a, c, rel_tol)
        if fx > fb:
            return x, fx
    return b, fb


def golden_section(f, a: int, b: int, rel_tol: float) -> tuple[int, int]:
    """Golden-section search of [a, b] until the bracket is within rel_tol of its centre."""
    c = b - int((b - a) * INV_PHI)
    d = a + int((b - a) * INV_PHI)
    fc, fd = f(c), f(d)
    while b - a > max(2, int(rel_tol * (a + b) / 2)):
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - int((b - a) * INV_PHI)
            fc = f(c) if c != d else fd
        else:
            a, c, fc = c, d, fd
            d = a + int((b - a) * INV_PHI)
            fd = f(d) if d != c else fc
    return (c, fc) if fc >= fd else (d, fd)
