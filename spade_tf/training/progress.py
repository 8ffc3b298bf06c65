"""What ``spade-train`` prints while it trains: Keras's bar, or one line per epoch.

Keras's bar (``verbose=1``) redraws itself with carriage returns and colour codes: right
on a terminal, hundreds of frames in a log file. ``verbose=2`` prints one line per epoch
instead (``Epoch 2/3 - 3/3 steps - 12s - d_loss: 1.3862 - ...``), which is what
``spade-train --verbose auto`` picks when its output is not a terminal.
"""

from __future__ import annotations

import time

from spade_tf.compat import OffsetProgbarLogger


def _number(value) -> str:
    value = float(value)
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.3e}"


class EpochProgress(OffsetProgbarLogger):
    """Keras's progress numbered over the whole run.

    ``train`` finishes an interrupted epoch with a ``fit`` of its own; this shows it as
    ``Epoch E/EPOCHS`` with the bar continuing from the steps done before, not as
    ``Epoch E/E`` of a shorter epoch. With ``verbose=2``, one line per epoch.
    """

    def __init__(self, epochs: int, steps_per_epoch: int):
        super().__init__()
        self.total_epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.started = time.monotonic()

    def set_params(self, params):
        super().set_params(params)
        self.epochs, self.target = self.total_epochs, self.steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()
        if self.verbose != 2:
            super().on_epoch_begin(epoch, logs)
        # verbose 2: no header line; the epoch's number opens the line written at its end

    def on_epoch_end(self, epoch, logs=None):
        if self.model is not None and self.model.stop_training:
            self.target = self.seen  # stopped early: end where it stopped ("2/3")
        if self.verbose == 2:
            self._epoch_line(epoch, logs or {})
        else:
            super().on_epoch_end(epoch, logs)
        self.target, self.offset = self.steps_per_epoch, 0

    def _epoch_line(self, epoch: int, logs: dict) -> None:
        line = (f"Epoch {epoch + 1}/{self.epochs} - {self.target}/{self.steps_per_epoch} "
                f"steps - {time.monotonic() - self.started:.0f}s")
        line += "".join(f" - {name}: {_number(value)}" for name, value in logs.items())
        print(line, flush=True)  # flushed: a log file followed with tail -f
