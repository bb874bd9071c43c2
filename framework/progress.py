"""Progress on the terminal: Lightning's bars with the epoch count and without the run version,
and bars for the work a test-time callback does before Lightning's test bar moves (labelling a
video with the teacher, fine-tuning on it, optimising its outputs: minutes inside one test batch).

Test-time bars are tqdm's, the package Lightning's own bars use, drawn on global rank zero while
the trainer shows a progress bar and standard error is a terminal (``show``), and cleared when
their work is done.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from pytorch_lightning.callbacks import TQDMProgressBar

_shown = False


class EpochProgressBar(TQDMProgressBar):
    """Lightning's bar, training as ``Epoch 3/6`` (counted from 1) and without ``v_num``."""

    def on_train_epoch_start(self, trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


def terminal() -> bool:
    """Whether bars reach a person: in a log file each redraw would be one more line."""
    return sys.stderr.isatty()


def show(trainer: Optional[Any]) -> None:
    """Draw test-time bars from now on when ``trainer`` shows a progress bar on this rank and
    standard error is a terminal (None: stop)."""
    global _shown
    _shown = bool(trainer is not None and trainer.is_global_zero and trainer.progress_bar_callback is not None
                  and terminal())


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def open_bar(total: Optional[int], desc: str) -> Any:
    """A bar of ``total`` steps (None: counted without a total) while test-time bars are shown, a
    silent stand-in otherwise; ``update``, ``set_postfix``, ``set_description`` and ``close`` work on both."""
    if not _shown:
        return _Silent()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


@contextmanager
def bar(total: Optional[int], desc: str) -> Iterator[Any]:
    """``open_bar`` closed when the block ends."""
    progress = open_bar(total, desc)
    try:
        yield progress
    finally:
        progress.close()
