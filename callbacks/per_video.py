"""The per-video driver: test rows grouped by video, each video prepared once before its first
row is scored.

A subclass says how to prepare a video (``prepare_video``: fine-tune weights, optimise outputs,
or both, any number of rounds; it returns the video's report) and how to give its rows' outputs
(``video_outputs``: by default ``module.predict`` with whatever weights preparing left).

Test loaders must keep each video's rows together and in order (dataset order does); under DDP
each rank gets whole videos (``datamodules/sampling.py``) and prepares those it is handed, and
the per-video reports are gathered at the end of the test, so every rank's summary lists every
video once (where a dataset lists no videos, DistributedSampler's padding may repeat one: its
first report is kept).
"""
from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import default_collate

from callbacks.test_time import ADAPTED_OUTPUTS, TestTimeCallback, autocast, batch_size_of, cat_outputs, slice_batch
from datamodules.videos import listed_videos
from framework import progress
from framework.errors import UserError


def test_dataset(trainer: pl.Trainer) -> Any:
    """The dataset behind the (first) test loader: where a callback reads a whole video or, for
    the report only, its ground truth."""
    loader = trainer.test_dataloaders
    return (loader[0] if isinstance(loader, (list, tuple)) else loader).dataset


def whole_video(trainer: pl.Trainer, video: int, device: torch.device) -> dict:
    """Every row of one video from the test dataset, collated in order (for work that needs the
    whole video while the loader hands it over a few rows at a time)."""
    dataset = test_dataset(trainer)
    spans = listed_videos(dataset)
    if video not in spans:
        raise UserError(f"video {video} is not listed by the test data ({type(dataset).__name__}.videos())")
    batch = default_collate([dataset[i] for i in spans[video].indices])
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


def gather_reports(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's per-video reports, one per video, in video order (this rank's alone without DDP)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return reports
    gathered: list[Optional[list[dict]]] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, reports)
    first: dict[int, dict[str, Any]] = {}
    for rank_reports in gathered:
        for report in rank_reports or []:
            first.setdefault(int(report["video"]), report)
    return [first[v] for v in sorted(first)]


class PerVideoCallback(TestTimeCallback):
    def __init__(self) -> None:
        super().__init__()
        self.reports: list[dict[str, Any]] = []
        self.pictures: list[np.ndarray] = []  # logged under ``picture_tag`` at test end
        self.picture_tag = "pictures/test_time"

    def summary(self) -> dict:
        """Per-video statistics (written into the adaptation report)."""
        return {"videos": list(self.reports)}

    # ------------------------------------------------------------ method specific
    @abstractmethod
    def prepare_video(self, trainer: pl.Trainer, pl_module, video: int, rows: dict) -> dict[str, Any]:
        """Do the video's test-time work before its first row is scored and return its report.
        ``rows`` are the rows of the current batch that belong to it: the whole video where an item
        is a video (tracking), only some of its frames where an item is a frame or pair
        (``whole_video`` reads the rest)."""

    def video_outputs(self, trainer: pl.Trainer, pl_module, video: int, rows: dict) -> dict[str, torch.Tensor]:
        """The outputs of some rows of a prepared video."""
        with torch.no_grad(), autocast(trainer):
            return pl_module.predict(rows)

    # --------------------------------------------------------------------- hooks
    def video_ids(self, batch: dict) -> torch.Tensor:
        """(B,) int64 id of the video each row of a test batch belongs to."""
        if "video" not in batch:
            raise UserError(f"{type(self).__name__} works per video, but the test batches carry no 'video' key; use "
                            f"a dataset made of videos (the synthetic videos, a real video dataset or footage) "
                            f"as data.target")
        return batch["video"]

    def on_test_start(self, trainer: pl.Trainer, pl_module) -> None:
        if not self.active:
            return
        super().on_test_start(trainer, pl_module)
        self.current: Optional[int] = None
        self.prepared_videos = 0
        self.reports = []
        self.pictures = []
        # this rank's videos: all of them in one process (under DDP the rank's share is not known here)
        count = len(listed_videos(test_dataset(trainer))) if trainer.world_size == 1 else None
        self.videos_bar = progress.open_bar(count or None, "adapting videos")

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not self.active:
            return
        pl_module.check_batch(batch)
        videos = self.video_ids(batch)
        size = batch_size_of(batch)
        outputs, start = [], 0
        while start < size:  # runs of rows from one video
            stop = start + 1
            while stop < size and int(videos[stop]) == int(videos[start]):
                stop += 1
            video = int(videos[start])
            rows = slice_batch(batch, start, stop)
            if video != self.current:
                began = time.perf_counter()
                self.videos_bar.set_description(f"adapting video {self.prepared_videos + 1}")
                report = self.prepare_video(trainer, pl_module, video, rows)
                self.reports.append({"video": video, **report, "seconds": time.perf_counter() - began})
                self.current = video
                self.prepared_videos += 1
                self.videos_bar.update(1)
            outputs.append(self.video_outputs(trainer, pl_module, video, rows))
            start = stop
        batch[ADAPTED_OUTPUTS] = cat_outputs(outputs)

    def on_test_end(self, trainer: pl.Trainer, pl_module) -> None:
        if not self.active:
            return
        self.videos_bar.close()
        super().on_test_end(trainer, pl_module)
        self.reports = gather_reports(self.reports)
        if self.pictures:
            from framework.images import log_images
            log_images(trainer, self.picture_tag, self.pictures)
