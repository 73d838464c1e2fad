"""Bias and interval coverage of each dp-table `post_processing` choice over 2,000 releases of a fixed
table (noise from the release's own OpenDP measurement), for docs/dp.md."""

from __future__ import annotations

import os

import numpy as np

from release.dp.accuracy import part_scale
from release.dp.noise import accuracy_95, noisy_vector
from release.dp.postprocess import margin_of, post_process

RELEASES = int(os.environ.get("BENCH_DP_RELEASES", "2000"))
TRUE = np.array([[0, 0, 1, 2], [3, 0, 12, 40], [1, 5, 0, 150]], dtype=np.int64)
SHAPE = TRUE.shape


def main() -> None:
    true = TRUE.ravel()
    tm = margin_of(true, SHAPE, (0,))
    for mech, budget in (("laplace", {"epsilon": 1.0}), ("gaussian", {"rho": 0.5})):
        scale, _ = part_scale({"mechanism": mech, **budget}, 2, 1)
        acc = accuracy_95(mech, scale)
        cells = noisy_vector(np.tile(true, RELEASES), mech, scale).reshape(RELEASES, -1)
        margins = noisy_vector(np.tile(tm, RELEASES), mech, scale).reshape(RELEASES, -1)
        print(f"\n{mech}, {'epsilon 1.0' if mech == 'laplace' else 'rho 0.5'} over cells + one margin"
              f" (scale {scale:.3f}, accuracy_95 ±{acc:.2f}), {RELEASES} releases of a 3x4 table")
        print(f"{'choice':<12} {'bias@0':>8} {'bias@1':>8} {'bias@2':>8} {'bias@150':>9} {'margin(0,0,1,2)':>16}"
              f" {'cov cells':>10} {'cov margins':>12} {'drowned':>8}")
        for choice in ("none", "nonnegative", "consistent"):
            pc = np.empty_like(cells)
            pm = np.empty_like(margins)
            for r in range(RELEASES):
                c, (m,) = post_process(cells[r], SHAPE, [((0,), margins[r])], choice, True)  # type: ignore[arg-type]
                pc[r], pm[r] = c, m
            bias = (pc - true).mean(axis=0)
            mbias = (pm - tm).mean(axis=0)
            lo_c = np.maximum(pc - acc, 0) if choice != "none" else pc - acc
            lo_m = np.maximum(pm - acc, 0) if choice != "none" else pm - acc
            cov_c = ((lo_c <= true) & (true <= pc + acc)).mean(axis=0).min()
            cov_m = ((lo_m <= tm) & (tm <= pm + acc)).mean(axis=0).min()
            drowned = (pc < acc).mean()
            print(f"{choice:<12} {bias[0]:>+8.3f} {bias[2]:>+8.3f} {bias[3]:>+8.3f} {bias[11]:>+9.3f}"
                  f" {mbias[0]:>+16.3f} {cov_c:>10.3f} {cov_m:>12.3f} {drowned:>8.1%}")
    print("\nbias@v: mean published minus true value of a cell whose true value is v; margin(0,0,1,2): the same"
          " for the first row's total (3); cov: the worst cell's (or margin's) coverage of the stated interval;"
          " drowned: share of published cells below their 95% error")


if __name__ == "__main__":
    main()
