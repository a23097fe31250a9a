"""The divergence guard: decides from the logged window means when a run has gone wrong.

Signals (checked every ``log_every`` steps, on the means of that window):

- a non-finite loss: fires at once;
- generator collapse: the spread of a fake batch (per-pixel standard deviation across the batch,
  averaged) falls below ``min_spread`` times the spread of the real batch, i.e. G draws nearly
  the same image for every z; or the sample diversity (``gantool.metrics.diversity``: seeds
  drawn the way samples are, compared at 8x8) falls below ``min_diversity`` after it had
  reached twice that, which also catches a generator whose samples repeat a few pictures with
  different noise on them (early samples are all alike, so a run must become varied first);
- the discriminator wins (BCE only): D(x) > 0.99 and D(G(z)) < 0.01, i.e. G gets no gradient.

A collapse or D-wins signal fires once it has held for ``patience`` consecutive steps. What to
do then (roll back, lower the learning rates, give up after M tries) is the loop's business.
"""

from __future__ import annotations

import math

D_WINS = (0.99, 0.01)  # D(x) above, D(G(z)) below


class DivergenceGuard:
    def __init__(self, patience: int, min_spread: float, watch_d: bool,
                 min_diversity: float = 0.0):
        self.patience, self.min_spread, self.watch_d = patience, min_spread, watch_d
        self.min_diversity = min_diversity
        self.streak = 0
        self.diversity: float | None = None  # the latest measured (rows carry it now and then)
        self.peak_diversity = 0.0

    @property
    def healthy(self) -> bool:
        """No signal is building up: a checkpoint taken now is a good one to return to."""
        return self.streak == 0

    def observe(self, row: dict, steps: int) -> str | None:
        """Feed one logged window of ``steps`` steps; the reason to roll back, or None."""
        losses = {k: row[k] for k in ("loss_d", "loss_g") if k in row}
        if not all(math.isfinite(v) for v in losses.values()):
            self.streak = 0
            return "non-finite loss (" + ", ".join(f"{k} {v}" for k, v in losses.items()) + ")"
        signal = None
        if "diversity" in row:
            self.diversity = row["diversity"]
            self.peak_diversity = max(self.peak_diversity, self.diversity)
        armed = self.peak_diversity >= 2 * self.min_diversity
        if row.get("spread", math.inf) < self.min_spread:
            signal = (f"generator collapse (fake batch spread {row['spread']:.3f} of the real "
                      f"one, below {self.min_spread:g})")
        elif armed and self.diversity is not None and self.diversity < self.min_diversity:
            signal = (f"generator collapse (sample diversity {self.diversity:.3f}, below "
                      f"{self.min_diversity:g}; real images score 1)")
        elif (self.watch_d and row.get("d_real", 0.0) > D_WINS[0]
              and row.get("d_fake", 1.0) < D_WINS[1]):
            signal = (f"discriminator wins (D(x) {row['d_real']:.3f}, "
                      f"D(G(z)) {row['d_fake']:.3f})")
        self.streak = self.streak + steps if signal else 0
        if signal and self.streak >= self.patience:
            streak, self.streak, self.diversity = self.streak, 0, None
            return f"{signal} for {streak} steps"
        return None
