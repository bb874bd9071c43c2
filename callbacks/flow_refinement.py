"""RAFT pseudo-label refinement ("Refining Pre-Trained Motion Models", flow part) and the
self-supervised baselines it is compared with, as one test-time callback.

Per video: the pre-trained weights (the teacher) predict forward and backward flow for the frame
pairs (t, t+1), t = 0, stride, 2 stride, ...; the cycle and colour checks select labels, which are
densified and re-balanced (``callbacks/flow_pseudo_labels.py``); the module is fine-tuned on them
with the sequence loss (gamma 0.85) under the authors' augmentation: asymmetric colour jitter,
random crop, horizontal (0.5) and vertical (0.1) flips. The ``photometric*`` objectives instead
train on the same pairs with colour constancy (+ smoothness, + edge-aware smoothness), without
colour jitter since it would break colour constancy itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch

from callbacks.flow_pictures import fit_height, put_label
from callbacks.flow_pseudo_labels import FlowLabelConfig, flow_pseudo_labels, rebalance_weights, validate_label_config
from callbacks.per_video import test_dataset
from callbacks.test_time import autocast
from callbacks.video_refinement import RefinementConfig, TrainingSet, VideoRefinement
from datamodules.colour_jitter import ColorJitter
from datamodules.videos import listed_videos
from framework import progress
from framework.checks import OneOf, check, fraction
from framework.errors import UserError
from geometry.flow import flow_to_color

OBJECTIVES = ("pseudo_labels", "photometric", "photometric_smooth", "photometric_edge")


@dataclass
class FlowAugmentConfig:
    """``adaptation.augment``: the authors' fine-tuning augmentation."""

    crop_size: list[int] = field(default_factory=lambda: [256, 512])  # shrunk to the frame (multiple of 8)
    colour_jitter: bool = True  # never for the photometric objectives: it would break colour constancy
    asymmetric_jitter_prob: float = 0.2
    h_flip_prob: float = 0.5
    v_flip_prob: float = 0.1


@dataclass
class FlowRefinementConfig(RefinementConfig):
    objective: str = "pseudo_labels"  # pseudo_labels | photometric | photometric_smooth | photometric_edge
    gamma: float = 0.85  # sequence-loss decay over RAFT's iterations
    smooth_weight: float = 0.05  # photometric_smooth / photometric_edge
    edge_weight: float = 150.0  # photometric_edge: exp(-edge_weight * |image gradient|), colours in 0..1
    labels: FlowLabelConfig = field(default_factory=FlowLabelConfig)
    augment: FlowAugmentConfig = field(default_factory=FlowAugmentConfig)


def validate_flow_refinement_config(c: FlowRefinementConfig, key: str = "adaptation") -> None:
    check(c, key, objective=OneOf(OBJECTIVES))
    validate_label_config(c.labels, f"{key}.labels")
    crop = list(c.augment.crop_size)
    if len(crop) != 2 or any(int(v) < 64 or int(v) % 8 for v in crop):
        raise UserError(f"{key}.augment.crop_size: must be [height, width], multiples of 8, at least 64, got {crop}")
    check(c.augment, f"{key}.augment", asymmetric_jitter_prob=fraction(), h_flip_prob=fraction(),
          v_flip_prob=fraction())


def video_spans(dataset: Any) -> dict[int, Any]:
    spans = listed_videos(dataset)
    if not spans:
        raise UserError(f"flow refinement works per video, but the test data ({type(dataset).__name__}) has no "
                        f"videos; use Sintel, the synthetic videos or footage as data.target")
    return spans


class FlowLabels(TrainingSet):
    """One video's labelled pairs (numpy, HWC) and the augmentation that draws batches from them."""

    def __init__(self, pairs: list[tuple[np.ndarray, ...]], cfg: FlowRefinementConfig, seed: tuple[int, ...],
                 stats: dict[str, float], device: torch.device):
        if not pairs:
            raise UserError("flow refinement: the video has no frame pairs to learn from")
        self.pairs, self.cfg, self.seed, self._stats, self.device = pairs, cfg, seed, stats, device
        h, w = pairs[0][0].shape[:2]
        crop = cfg.augment.crop_size
        self.crop = (min(int(crop[0]), h // 8 * 8), min(int(crop[1]), w // 8 * 8))
        if min(self.crop) < 64:
            raise UserError(f"flow refinement: frames of {h}x{w} px are too small for RAFT (64 px at least)")
        photometric = cfg.objective != "pseudo_labels"
        self.jitter = ColorJitter() if cfg.augment.colour_jitter and not photometric else None

    def stats(self) -> dict[str, float]:
        return dict(self._stats)

    def labels_made(self) -> int:
        return int(sum(int((p[3] > 0).sum()) for p in self.pairs))

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        c = self.cfg.augment
        img1, img2, flow, weight = self.pairs[int(rng.integers(len(self.pairs)))]
        if self.jitter is not None:
            if rng.random() < c.asymmetric_jitter_prob:
                img1, img2 = self.jitter(img1, rng), self.jitter(img2, rng)
            else:
                both = self.jitter(np.concatenate((img1, img2), axis=0), rng)
                img1, img2 = both[: img1.shape[0]], both[img1.shape[0]:]
        ch, cw = self.crop
        h, w = img1.shape[:2]
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        arrays = [a[y0:y0 + ch, x0:x0 + cw] for a in (img1, img2, flow, weight)]
        if rng.random() < c.h_flip_prob:
            arrays = [a[:, ::-1] for a in arrays]
            arrays[2] = arrays[2] * np.array([-1.0, 1.0], dtype=np.float32)
        if rng.random() < c.v_flip_prob:
            arrays = [a[::-1] for a in arrays]
            arrays[2] = arrays[2] * np.array([1.0, -1.0], dtype=np.float32)
        return dict(zip(("image1", "image2", "flow", "weight"), arrays))

    def batch(self, step: int, part: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((*self.seed, step, part))
        samples = [self.sample(rng) for _ in range(self.cfg.finetune.batch_size)]

        def stack(key: str, channels_first: bool) -> torch.Tensor:
            array = np.stack([np.ascontiguousarray(s[key], dtype=np.float32) for s in samples])
            tensor = torch.from_numpy(array)
            return (tensor.permute(0, 3, 1, 2) if channels_first else tensor).contiguous().to(self.device)

        return {"image1": stack("image1", True), "image2": stack("image2", True),
                "flow": stack("flow", True), "weight": stack("weight", False)}


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().permute(1, 2, 0).numpy()


class FlowRefinement(VideoRefinement):
    config_class = FlowRefinementConfig
    validate = staticmethod(validate_flow_refinement_config)
    loosen = "loosen adaptation.labels.alpha1 / alpha2 / colour_threshold (or its filters)"

    # ------------------------------------------------------------------ labels
    def _frames(self, trainer: pl.Trainer, video: int) -> tuple[list[torch.Tensor], list[Optional[torch.Tensor]]]:
        """The video's frames, and the ground-truth flow of each pair where the data has it
        (then the report also says how accurate the labels are; refinement never uses it)."""
        dataset = test_dataset(trainer)
        spans = video_spans(dataset)
        if video not in spans:
            raise UserError(f"flow refinement: video {video} is not in the test data")
        items = [dataset[i] for i in spans[video].indices]
        truth = [item["flow"] if "flow" in item and float(item.get("valid", torch.ones(1)).min()) >= 0.5 else None
                 for item in items]
        return [item["image1"] for item in items] + [items[-1]["image2"]], truth

    @torch.no_grad()
    def _teacher_flows(self, trainer, pl_module, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        outs = []
        size = self.cfg.labels.teacher_batch
        with progress.bar(first.shape[0], "teacher flow") as shown:
            for s in range(0, first.shape[0], size):
                batch = {"image1": first[s:s + size], "image2": second[s:s + size]}
                with autocast(trainer):
                    outs.append(self.teacher(pl_module, batch)["flow"].float())
                shown.update(outs[-1].shape[0])
        return torch.cat(outs)

    def training_set(self, trainer: pl.Trainer, pl_module, video: int, rows: dict) -> FlowLabels:
        c = self.cfg
        frames, truth = self._frames(trainer, video)
        starts = list(range(0, len(frames) - 1, c.labels.stride))
        device = pl_module.device
        image1 = torch.stack([frames[t] for t in starts]).to(device)
        image2 = torch.stack([frames[t + 1] for t in starts]).to(device)
        stats: dict[str, float] = {"pairs": float(len(starts))}
        if c.objective == "pseudo_labels":
            fw = self._teacher_flows(trainer, pl_module, image1, image2)
            bw = self._teacher_flows(trainer, pl_module, image2, image1)
            mask, label_stats = flow_pseudo_labels(image1, image2, fw, bw, c.labels)
            stats.update(label_stats)
            if all(truth[t] is not None for t in starts):
                error = torch.linalg.vector_norm(fw - torch.stack([truth[t] for t in starts]).to(device), dim=1)
                stats["teacher_epe"] = error.mean().item()
                stats["label_epe"] = error[mask].mean().item() if bool(mask.any()) else float("nan")
            if c.labels.rebalance:
                weight = rebalance_weights(fw, mask, list(c.labels.rebalance_edges), c.labels.rebalance_max_weight)
            else:
                weight = mask.float()
            if len(self.pictures) < c.pictures:
                self.pictures.append(self._label_picture(image1[0], fw[0], mask[0]))
        else:
            fw = torch.zeros(image1.shape[0], 2, *image1.shape[-2:], device=device)
            weight = torch.ones(image1.shape[0], *image1.shape[-2:], device=device)
        pairs = [(_hwc(image1[i]), _hwc(image2[i]), _hwc(fw[i]), weight[i].float().cpu().numpy())
                 for i in range(len(starts))]
        return FlowLabels(pairs, c, (c.seed, video), stats, device)

    def _label_picture(self, image: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor, size: int = 192) -> np.ndarray:
        frame = np.clip(_hwc(image), 0, 255).astype(np.uint8)
        colour = flow_to_color(flow.cpu().numpy())
        labels = colour.copy()
        labels[~mask.cpu().numpy()] = 0
        share = float(mask.float().mean())
        panels = [put_label(fit_height(frame, size), "frame 1"), put_label(fit_height(colour, size), "teacher flow"),
                  put_label(fit_height(labels, size), f"pseudo-labels {100 * share:.0f}%")]
        return np.ascontiguousarray(np.concatenate(panels, axis=1))

    # -------------------------------------------------------------------- loss
    def loss(self, pl_module, batch: dict) -> torch.Tensor:
        c = self.cfg
        return pl_module.refinement_loss(batch, c.objective, iters=c.finetune.iters, gamma=c.gamma,
                                         smooth_weight=c.smooth_weight if c.objective != "photometric" else 0.0,
                                         edge_weight=c.edge_weight if c.objective == "photometric_edge" else 0.0)
