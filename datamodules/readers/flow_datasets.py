"""Torch datasets over the real optical-flow benchmarks, read in their own file layouts.

Every item is a dict: ``image1``, ``image2`` float32 (3, H, W) RGB in 0..255, ``flow`` float32
(2, H, W) in pixels (u, v), ``valid`` float32 (H, W) 0/1, ``index`` int64, and where the data
set is made of videos ``video`` (int) and ``frame`` (position of the pair in its video).
Splits without ground truth (Sintel and KITTI test) leave ``flow`` and ``valid`` out.

Dense flows (Sintel, Chairs, Things) count a pixel valid where both components are below
1000 px, as the RAFT authors do (Things stores huge values at some invalid pixels); KITTI's
valid mask comes from its PNG. Files are listed (and their presence checked) when the data
set is built; sizes are checked per pair when it is read. An optional augmentor
(``datamodules.flow_augment``) is drawn from a generator seeded by (seed, epoch, index):
call ``set_epoch`` before each epoch to get new crops that are still reproducible.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.readers.common import require_dir, require_file
from datamodules.readers.flow_formats import (check_same_size, read_flo, read_image, read_kitti_flow,
                                              read_pfm_flow)
from datamodules.videos import VideoSpan
from framework.errors import UserError

DENSE_VALID_LIMIT = 1000.0

# Sintel training scenes with a person on screen (Sintel herself, the shaman, the ambusher, the
# market crowd), for the flow-and-pose bootstrapping method. Its paper evaluates on "a subset of the
# Sintel (final) dataset with scenes containing humans" without listing the scenes, so this is the
# set of training scenes in which a human character appears; mountain_1 (a mountain landscape with
# nobody in it) is the one training scene left out. Build it with ``MpiSintel(root, scenes=SINTEL_HUMAN_SCENES)``.
SINTEL_HUMAN_SCENES = (
    "alley_1", "alley_2", "ambush_2", "ambush_4", "ambush_5", "ambush_6", "ambush_7", "bamboo_1", "bamboo_2",
    "bandage_1", "bandage_2", "cave_2", "cave_4", "market_2", "market_5", "market_6", "shaman_2", "shaman_3",
    "sleeping_1", "sleeping_2", "temple_2", "temple_3",
)


class FlowPair(NamedTuple):
    image1: Path
    image2: Path
    flow: Optional[Path]  # None where the split has no ground truth
    video: Optional[int] = None
    frame: Optional[int] = None


def _sorted_files(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file())


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


class FlowPairDataset(Dataset):
    """Pairs of frames with their flow; subclasses only list the files and say how flow is read."""

    sparse = False

    def __init__(self, pairs: Sequence[FlowPair], augmentor: Optional[Callable] = None, seed: int = 0,
                 video_names: Optional[Sequence[str]] = None, what: str = "flow dataset"):
        if not pairs:
            raise UserError(f"{what}: no frame pairs found")
        self.pairs = list(pairs)
        self.augmentor = augmentor
        self.seed, self.epoch = int(seed), 0
        self.video_names = list(video_names) if video_names is not None else None

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def videos(self) -> dict[int, VideoSpan]:
        """{video id: (name, dataset indices in frame order)}; empty where the set has no videos."""
        out: dict[int, VideoSpan] = {}
        for i, pair in enumerate(self.pairs):
            if pair.video is None:
                continue
            name = self.video_names[pair.video] if self.video_names else str(pair.video)
            out.setdefault(pair.video, VideoSpan(name, [])).indices.append(i)
        for span in out.values():
            span.indices.sort(key=lambda i: self.pairs[i].frame)
        return out

    def read_flow(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        flow = read_flo(path)
        return flow, self._dense_valid(flow)

    @staticmethod
    def _dense_valid(flow: np.ndarray) -> np.ndarray:
        return ((np.abs(flow[..., 0]) < DENSE_VALID_LIMIT) & (np.abs(flow[..., 1]) < DENSE_VALID_LIMIT))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        pair = self.pairs[index]
        img1, img2 = read_image(pair.image1), read_image(pair.image2)
        flow = valid = None
        paths = [pair.image1, pair.image2]
        if pair.flow is not None:
            flow, valid = self.read_flow(pair.flow)
            paths.append(pair.flow)
        shapes = {img1.shape[:2], img2.shape[:2]} | ({flow.shape[:2]} if flow is not None else set())
        if len(shapes) > 1:
            check_same_size(paths)  # raises naming the file whose size differs
        if self.augmentor is not None:
            if flow is None:
                raise UserError(f"{type(self).__name__}: cannot augment a split without ground-truth flow")
            rng = np.random.default_rng((self.seed, self.epoch, index))
            if self.sparse:
                img1, img2, flow, valid = self.augmentor(img1, img2, flow, valid, rng)
            else:
                img1, img2, flow = self.augmentor(img1, img2, flow, rng)
                valid = self._dense_valid(flow)
        item = {
            "image1": torch.from_numpy(np.ascontiguousarray(img1, dtype=np.float32)).permute(2, 0, 1).contiguous(),
            "image2": torch.from_numpy(np.ascontiguousarray(img2, dtype=np.float32)).permute(2, 0, 1).contiguous(),
            "index": torch.tensor(index, dtype=torch.int64),
        }
        if flow is not None:
            item["flow"] = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1).contiguous()
            item["valid"] = torch.from_numpy(np.ascontiguousarray(valid, dtype=np.float32))
        if pair.video is not None:
            item["video"] = torch.tensor(pair.video, dtype=torch.int64)
            item["frame"] = torch.tensor(pair.frame, dtype=torch.int64)
        return item


class MpiSintel(FlowPairDataset):
    """MPI-Sintel: ``root/{training,test}/{clean,final}/<scene>/frame_%04d.png`` and
    ``root/training/flow/<scene>/frame_%04d.flo`` (flow from frame i to i + 1).
    Each scene is a video (ids follow the sorted scene names kept by ``scenes``, a list of scene
    names such as ``SINTEL_HUMAN_SCENES``; a bare string is one scene)."""

    _FRAME = re.compile(r"frame_(\d+)\.png$")

    def __init__(self, root, split: str = "training", pass_name: str = "clean",
                 scenes: Optional[Sequence[str]] = None, **kwargs):
        if split not in ("training", "test"):
            raise UserError(f"MPI-Sintel: split must be 'training' or 'test', got {split!r}")
        if pass_name not in ("clean", "final"):
            raise UserError(f"MPI-Sintel: pass_name must be 'clean' or 'final', got {pass_name!r}")
        root = require_dir(root, "MPI-Sintel root")
        image_root = require_dir(root / split / pass_name, f"MPI-Sintel {split} {pass_name} frames")
        flow_root = require_dir(root / split / "flow", "MPI-Sintel flow") if split == "training" else None
        found = [d.name for d in _subdirs(image_root)]
        if isinstance(scenes, str):
            scenes = [scenes]
        if scenes is not None:
            missing = [s for s in scenes if s not in found]
            if missing:
                raise UserError(f"MPI-Sintel: scene(s) {', '.join(missing)} not in {image_root} "
                                f"(found: {', '.join(found) or 'none'})")
            found = [s for s in found if s in set(scenes)]
        pairs = []
        for vid, scene in enumerate(found):
            frames = []
            for p in _sorted_files(image_root / scene, "frame_*.png"):
                m = self._FRAME.search(p.name)
                if m:
                    frames.append((int(m.group(1)), p))
            frames.sort()
            for k in range(len(frames) - 1):
                (n1, p1), (n2, p2) = frames[k], frames[k + 1]
                if n2 != n1 + 1:
                    raise UserError(f"MPI-Sintel: {image_root / scene} jumps from frame {n1} to {n2}")
                flow = None
                if flow_root is not None:
                    flow = require_file(flow_root / scene / f"frame_{n1:04d}.flo", "MPI-Sintel flow")
                pairs.append(FlowPair(p1, p2, flow, vid, k))
        self.scenes = found
        super().__init__(pairs, video_names=found, what=f"MPI-Sintel {split} {pass_name} in {root}", **kwargs)


class FlyingChairs(FlowPairDataset):
    """FlyingChairs: ``root/data/00001_img1.ppm``, ``_img2.ppm``, ``_flow.flo``; the split file
    ``FlyingChairs_train_val.txt`` (one 1 = train / 2 = val per sample, in name order) is looked
    for in ``root`` and ``root/data``. Without it every sample is training data."""

    SPLIT_FILE = "FlyingChairs_train_val.txt"

    def __init__(self, root, split: str = "train", **kwargs):
        if split not in ("train", "val", "all"):
            raise UserError(f"FlyingChairs: split must be 'train', 'val' or 'all', got {split!r}")
        root = require_dir(root, "FlyingChairs root")
        data = require_dir(root / "data", "FlyingChairs data")
        firsts = _sorted_files(data, "*_img1.ppm")
        pairs = []
        for p1 in firsts:
            stem = p1.name[: -len("_img1.ppm")]
            p2 = require_file(data / f"{stem}_img2.ppm", "FlyingChairs second frame")
            flow = require_file(data / f"{stem}_flow.flo", "FlyingChairs flow")
            pairs.append(FlowPair(p1, p2, flow))
        if split != "all":
            split_file = next((d / self.SPLIT_FILE for d in (root, data) if (d / self.SPLIT_FILE).is_file()), None)
            if split_file is None and split == "val":
                raise UserError(f"FlyingChairs: split 'val' needs {root / self.SPLIT_FILE}, which does not exist")
            if split_file is not None:
                labels = self._read_split(split_file)
                if len(labels) != len(pairs):
                    raise UserError(f"{split_file}: {len(labels)} entries for {len(pairs)} samples in {data}")
                want = 1 if split == "train" else 2
                pairs = [p for p, lab in zip(pairs, labels) if lab == want]
        super().__init__(pairs, what=f"FlyingChairs {split} in {root}", **kwargs)

    @staticmethod
    def _read_split(path: Path) -> list[int]:
        try:
            labels = [int(t) for t in path.read_text().split()]
        except ValueError:
            raise UserError(f"{path}: expected one 1 (train) or 2 (val) per line") from None
        bad = sorted(set(labels) - {1, 2})
        if bad:
            raise UserError(f"{path}: expected only 1 (train) or 2 (val), found {bad[:5]}")
        return labels


class FlyingThings3D(FlowPairDataset):
    """FlyingThings3D: ``root/frames_{cleanpass,finalpass}/{TRAIN,TEST}/{A,B,C}/<seq>/{left,right}/%04d.png``
    and ``root/optical_flow/.../<seq>/{into_future,into_past}/{left,right}/OpticalFlowInto{Future,Past}_%04d_{L,R}.pfm``.

    As the authors' loader: for each pair of consecutive frames n, n+1 a forward pair
    (n -> n+1, IntoFuture_n) and a backward pair (n+1 -> n, IntoPast_{n+1}). Each
    (pass, letter, sequence, camera, direction) is a video.
    """

    _FRAME = re.compile(r"^(\d+)\.png$")

    def __init__(self, root, split: str = "TRAIN", passes: Sequence[str] = ("clean",),
                 cameras: Sequence[str] = ("left",), directions: Sequence[str] = ("into_future", "into_past"),
                 **kwargs):
        if split not in ("TRAIN", "TEST"):
            raise UserError(f"FlyingThings3D: split must be 'TRAIN' or 'TEST', got {split!r}")
        for name, values, allowed in (("passes", passes, ("clean", "final")), ("cameras", cameras, ("left", "right")),
                                      ("directions", directions, ("into_future", "into_past"))):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise UserError(f"FlyingThings3D: {name} must be a non-empty subset of {allowed}, got {list(values)}")
        root = require_dir(root, "FlyingThings3D root")
        flow_root = require_dir(root / "optical_flow" / split, "FlyingThings3D flow")
        pairs, names = [], []
        for pass_name in passes:
            image_root = require_dir(root / f"frames_{pass_name}pass" / split, f"FlyingThings3D {pass_name} frames")
            for letter in _subdirs(image_root):
                for seq in _subdirs(letter):
                    for cam in cameras:
                        frames = self._frames(seq / cam)
                        for direction in directions:
                            flow_dir = flow_root / letter.name / seq.name / direction / cam
                            vid = len(names)
                            names.append(f"{pass_name}/{letter.name}/{seq.name}/{cam}/{direction}")
                            pairs += self._pairs(frames, flow_dir, direction, cam, vid)
        super().__init__(pairs, video_names=names, what=f"FlyingThings3D {split} in {root}", **kwargs)

    def _frames(self, folder: Path) -> list[tuple[int, Path]]:
        folder = require_dir(folder, "FlyingThings3D frames")
        frames = []
        for p in _sorted_files(folder, "*.png"):
            m = self._FRAME.match(p.name)
            if m:
                frames.append((int(m.group(1)), p))
        return sorted(frames)

    @staticmethod
    def _pairs(frames, flow_dir: Path, direction: str, cam: str, vid: int) -> list[FlowPair]:
        side = "L" if cam == "left" else "R"
        kind = "Future" if direction == "into_future" else "Past"
        out = []
        for k in range(len(frames) - 1):
            (n1, p1), (n2, p2) = frames[k], frames[k + 1]
            if n2 != n1 + 1:
                continue  # not consecutive: no flow between them
            if direction == "into_future":
                flow = require_file(flow_dir / f"OpticalFlowInto{kind}_{n1:04d}_{side}.pfm", "FlyingThings3D flow")
                out.append(FlowPair(p1, p2, flow, vid, k))
            else:
                flow = require_file(flow_dir / f"OpticalFlowInto{kind}_{n2:04d}_{side}.pfm", "FlyingThings3D flow")
                out.append(FlowPair(p2, p1, flow, vid, k))
        return out

    def read_flow(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        flow = read_pfm_flow(path)
        return flow, self._dense_valid(flow)


class Kitti2015(FlowPairDataset):
    """KITTI 2015: ``root/{training,testing}/image_2/%06d_10.png`` and ``_11.png``, sparse flow in
    ``root/training/flow_occ/%06d_10.png`` (valid mask from the PNG; no flow for testing)."""

    sparse = True

    def __init__(self, root, split: str = "training", **kwargs):
        if split not in ("training", "testing"):
            raise UserError(f"KITTI 2015: split must be 'training' or 'testing', got {split!r}")
        root = require_dir(root, "KITTI 2015 root")
        image_dir = require_dir(root / split / "image_2", f"KITTI 2015 {split} images")
        flow_dir = require_dir(root / split / "flow_occ", "KITTI 2015 flow") if split == "training" else None
        pairs = []
        for p1 in _sorted_files(image_dir, "*_10.png"):
            stem = p1.name[: -len("_10.png")]
            p2 = require_file(image_dir / f"{stem}_11.png", "KITTI 2015 second frame")
            flow = require_file(flow_dir / p1.name, "KITTI 2015 flow") if flow_dir is not None else None
            pairs.append(FlowPair(p1, p2, flow))
        super().__init__(pairs, what=f"KITTI 2015 {split} in {root}", **kwargs)

    def read_flow(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return read_kitti_flow(path)
