"""Human3.6M in the VideoPose3D release format.

Files (in ``root``):
- ``data_3d_h36m.npz``: ``positions_3d`` = pickled dict subject -> action -> (T, 32, 3)
  world positions in metres (32-joint H36M layout; 17 of them are used);
- ``data_2d_h36m_<keypoints>.npz`` (``gt``, ``cpn_ft_h36m_dbb``, ...): ``positions_2d`` =
  subject -> action -> list of 4 cameras of (T, 17, 2) pixels in H36M-17 order, and
  ``metadata`` (``layout_name``, ``num_joints``, ``keypoints_symmetry``).

Each sample is one (subject, action, camera, frame): the 3D joints moved into that
camera's frame (OpenCV axes, metres, root-relative) and its 2D joints normalised with
that camera's resolution.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from datamodules.readers.common import (check_finite, check_shape, normalized_camera,
                                        npz_array, open_npz, pose_item, require_dir, require_file)
from framework.errors import UserError
from geometry.camera import normalize_screen

# The 17 of the 32 recorded H36M joints that make up H36M-17 (geometry.skeletons.H36M17 order).
H36M32_TO_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")

# Camera order of the 2D lists: the four Vicon-synchronised video cameras.
CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")

# Intrinsics per camera (pixels): focal x, focal y, centre x, centre y, width, height.
# Public constants of the dataset's calibration. Lens distortion is not needed here: the
# released 2D keypoints already include it.
INTRINSICS = {
    "54138969": (1145.0494384765625, 1143.7811279296875, 512.54150390625, 515.4514770507812, 1000, 1002),
    "55011271": (1149.6756591796875, 1147.5916748046875, 508.8486328125, 508.0649108886719, 1000, 1000),
    "58860488": (1149.1407470703125, 1148.7989501953125, 519.8158569335938, 501.40264892578125, 1000, 1000),
    "60457274": (1145.5113525390625, 1144.77392578125, 514.9682006835938, 501.88201904296875, 1000, 1002),
}

# Extrinsics per subject, one row per camera in CAMERA_IDS order: the camera's orientation
# as a unit quaternion (w, x, y, z) and its position in world millimetres. A world point X
# (metres) is in camera coordinates at rotate(inverse(q), X - t / 1000).
EXTRINSICS = {
    "S1": (
        ((0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088),
         (1841.1070556640625, 4955.28466796875, 1563.4454345703125)),
        ((0.6157187819480896, -0.764836311340332, -0.14833825826644897, 0.11794740706682205),
         (1761.278564453125, -5078.0068359375, 1606.2650146484375)),
        ((0.14651472866535187, -0.14647851884365082, 0.7653023600578308, -0.6094175577163696),
         (-1846.7777099609375, 5215.04638671875, 1491.972412109375)),
        ((0.5834008455276489, -0.7853162288665771, 0.14548823237419128, -0.14749594032764435),
         (-1794.7896728515625, -3722.698974609375, 1574.8927001953125)),
    ),
    "S5": (
        ((0.1467377245426178, -0.162370964884758, -0.7551892995834351, 0.6178938746452332),
         (2097.3916015625, 4880.94482421875, 1605.732421875)),
        ((0.6159758567810059, -0.7626792192459106, -0.15728192031383514, 0.1189815029501915),
         (2031.7008056640625, -5167.93310546875, 1612.923095703125)),
        ((0.14291371405124664, -0.12907841801643372, 0.7678384780883789, -0.6110143065452576),
         (-1620.5948486328125, 5171.65869140625, 1496.43701171875)),
        ((0.5920479893684387, -0.7814217805862427, 0.1274748593568802, -0.15036417543888092),
         (-1637.1737060546875, -3867.3173828125, 1547.033203125)),
    ),
    "S6": (
        ((0.1337897777557373, -0.15692396461963654, -0.7571090459823608, 0.6198879480361938),
         (1935.4517822265625, 4950.24560546875, 1618.0838623046875)),
        ((0.6147197484970093, -0.7628812789916992, -0.16174767911434174, 0.11819244921207428),
         (1969.803955078125, -5128.73876953125, 1632.77880859375)),
        ((0.1529948115348816, -0.13529130816459656, 0.7646096348762512, -0.6112781167030334),
         (-1769.596435546875, 5185.361328125, 1476.993408203125)),
        ((0.5916101336479187, -0.7804774045944214, 0.12832270562648773, -0.1561593860387802),
         (-1721.668701171875, -3884.13134765625, 1540.4879150390625)),
    ),
    "S7": (
        ((0.1435241848230362, -0.1631336808204651, -0.7548328638076782, 0.6188824772834778),
         (1974.512939453125, 4926.3544921875, 1597.8326416015625)),
        ((0.6141672730445862, -0.7638262510299683, -0.1596645563840866, 0.1177929937839508),
         (1937.0584716796875, -5119.7900390625, 1631.5665283203125)),
        ((0.14550060033798218, -0.12874816358089447, 0.7660516500473022, -0.6127139329910278),
         (-1741.8111572265625, 5208.24951171875, 1464.8245849609375)),
        ((0.5912848114967346, -0.7821764349937439, 0.12445473670959473, -0.15196487307548523),
         (-1734.7105712890625, -3832.42138671875, 1548.5830078125)),
    ),
    "S8": (
        ((0.14110587537288666, -0.15589867532253265, -0.7561917304992676, 0.619644045829773),
         (2150.65185546875, 4896.1611328125, 1611.9046630859375)),
        ((0.6169601678848267, -0.7647668123245239, -0.14846350252628326, 0.11158157885074615),
         (2219.965576171875, -5148.453125, 1613.0440673828125)),
        ((0.1471444070339203, -0.13377119600772858, 0.7670128345489502, -0.6100369691848755),
         (-1571.2215576171875, 5137.0185546875, 1498.1761474609375)),
        ((0.5927824378013611, -0.7825870513916016, 0.12147816270589828, -0.14631995558738708),
         (-1476.913330078125, -3896.7412109375, 1547.97216796875)),
    ),
    "S9": (
        ((0.15540587902069092, -0.15548215806484222, -0.7532095313072205, 0.6199594736099243),
         (2044.45849609375, 4935.1171875, 1481.2275390625)),
        ((0.618784487247467, -0.7634735107421875, -0.14132238924503326, 0.11933968216180801),
         (1990.959716796875, -5123.810546875, 1568.8048095703125)),
        ((0.13357827067375183, -0.1367100477218628, 0.7689454555511475, -0.6100738644599915),
         (-1670.9921875, 5211.98583984375, 1528.387939453125)),
        ((0.5879399180412292, -0.7823407053947449, 0.1427614390850067, -0.14794869720935822),
         (-1696.04345703125, -3827.099853515625, 1591.4127197265625)),
    ),
    "S11": (
        ((0.15232472121715546, -0.15442320704460144, -0.7547563314437866, 0.6191070079803467),
         (2098.440185546875, 4926.5546875, 1500.278564453125)),
        ((0.6189449429512024, -0.7600917220115662, -0.15300633013248444, 0.1255258321762085),
         (2083.182373046875, -4912.1728515625, 1561.07861328125)),
        ((0.14943228662014008, -0.15650227665901184, 0.7681233882904053, -0.6026304364204407),
         (-1609.8153076171875, 5177.3359375, 1537.896728515625)),
        ((0.5894251465797424, -0.7818877100944519, 0.13991211354732513, -0.14715361595153809),
         (-1590.738037109375, -3854.1689453125, 1578.017578125)),
    ),
}


def quaternion_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate points v (..., 3) by the unit quaternion q = (w, x, y, z)."""
    q = np.asarray(q, dtype=np.float64)
    w, u = q[0], q[1:]
    uv = np.cross(u, v)
    return v + 2 * (w * uv + np.cross(u, uv))


def quaternion_inverse(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return np.concatenate([q[:1], -q[1:]])


def world_to_camera(points: np.ndarray, subject: str, camera: int) -> np.ndarray:
    """World metres (..., 3) -> camera frame of ``CAMERA_IDS[camera]`` for ``subject``."""
    q, t = EXTRINSICS[subject][camera]
    return quaternion_rotate(quaternion_inverse(q), points - np.asarray(t) / 1000.0)


def _load_pickled_dict(path: Path, key: str) -> dict:
    # The VideoPose3D format stores a dict inside a 0-d object array, so reading it needs
    # allow_pickle=True: accepted because the format requires it (only open files you trust).
    npz = open_npz(path, allow_pickle=True)
    arr = npz_array(npz, key, path)
    if arr.dtype != object or arr.shape != ():
        raise UserError(f"{path}: '{key}' must be a pickled dict (subject -> action -> array), "
                        f"got an array of dtype {arr.dtype} and shape {arr.shape}")
    value = arr.item()
    if not isinstance(value, dict):
        raise UserError(f"{path}: '{key}' must be a dict subject -> action -> array, got {type(value).__name__}")
    return value


def _action_selected(action: str, actions: Optional[Sequence[str]]) -> bool:
    return not actions or action in actions or action.split(" ")[0] in actions


class CameraSequence(NamedTuple):
    """One (subject, action) filmed by one camera: every frame's joints in that camera."""

    subject: str
    action: str
    camera: int  # index into CAMERA_IDS
    joints2d: np.ndarray  # (T, 17, 2) pixels: the 2D file's keypoints, or the pinhole projection
    joints3d: np.ndarray  # (T, 17, 3) camera frame (OpenCV axes), metres
    intrinsics: tuple[float, float, float, float]  # fx, fy, cx, cy in pixels
    size: tuple[int, int]  # width, height of the camera's video

    @property
    def name(self) -> str:
        """As the dataset names the sequence's video: ``<subject>_<action>.<camera id>``."""
        return f"{self.subject}_{self.action}.{CAMERA_IDS[self.camera]}"


def camera_sequences(path_3d: Path, data_3d: dict, path_2d: Optional[Path], data_2d: Optional[dict],
                     subjects: Sequence[str], actions: Optional[Sequence[str]],
                     cameras: Sequence[int]) -> Iterator[CameraSequence]:
    """Every selected (subject, action, camera) of the loaded VideoPose3D dicts, checked."""
    for subject in subjects:
        if subject not in data_3d:
            raise UserError(f"{path_3d}: no subject '{subject}' in positions_3d (found: {', '.join(map(str, data_3d))})")
        if data_2d is not None and subject not in data_2d:
            raise UserError(f"{path_2d}: no subject '{subject}' in positions_2d (found: {', '.join(map(str, data_2d))})")
        for action, positions in data_3d[subject].items():
            if not _action_selected(action, actions):
                continue
            where = f"{path_3d}: positions_3d['{subject}']['{action}']"
            world = check_shape(positions, (None, None, 3), where)
            if world.shape[1] == 32:
                world = world[:, H36M32_TO_17]
            elif world.shape[1] != 17:
                raise UserError(f"{where}: expected shape (T, 32, 3) (or (T, 17, 3)), got {world.shape}")
            check_finite(world, where)
            keypoints = None if data_2d is None else \
                H36MDataset._keypoints(data_2d, path_2d, subject, action, world.shape[0])
            for c in cameras:
                cam3d = world_to_camera(world, subject, c)
                fx, fy, cx, cy, w, h = INTRINSICS[CAMERA_IDS[c]]
                if keypoints is None:
                    px = cam3d[..., :2] / cam3d[..., 2:3] * np.array([fx, fy]) + np.array([cx, cy])
                else:
                    px = keypoints[c]
                yield CameraSequence(subject, action, c, px, cam3d, (fx, fy, cx, cy), (w, h))


def checked_selection(subjects: Sequence[str], cameras: Optional[Sequence[int]], what: str) -> tuple[int, ...]:
    """The camera indices (all four for None), after checking them and the subjects."""
    cameras = tuple(range(len(CAMERA_IDS))) if cameras is None else tuple(int(c) for c in cameras)
    for c in cameras:
        if not 0 <= c < len(CAMERA_IDS):
            raise UserError(f"{what}: camera index {c} out of range 0..{len(CAMERA_IDS) - 1}")
    for s in subjects:
        if s not in EXTRINSICS:
            raise UserError(f"{what}: unknown subject '{s}'; cameras are known for {', '.join(EXTRINSICS)}")
    return cameras


def h36m_paths(root: str | Path, keypoints: Optional[str] = "gt") -> tuple[Path, Optional[Path]]:
    """The 3D file and the 2D file of ``keypoints`` (None for ``projected``) in a VideoPose3D folder."""
    root = require_dir(root, "Human3.6M root")
    return root / "data_3d_h36m.npz", None if keypoints in (None, "", "projected") else root / f"data_2d_h36m_{keypoints}.npz"


def load_h36m(path_3d: str | Path, path_2d: Optional[str | Path]) -> tuple[Path, dict, Optional[Path], Optional[dict]]:
    """The checked paths and loaded dicts of the 3D file and (unless None) the 2D file."""
    path_3d = require_file(path_3d, "Human3.6M 3D poses")
    data_2d = None
    if path_2d is not None:
        path_2d = require_file(path_2d, "Human3.6M 2D keypoints")
        data_2d = _load_pickled_dict(path_2d, "positions_2d")
        H36MDataset._check_metadata(path_2d)
    return path_3d, _load_pickled_dict(path_3d, "positions_3d"), path_2d, data_2d


class H36MDataset(Dataset):
    """Samples of the chosen subjects, actions and cameras, every ``stride``-th frame.

    ``path_2d=None`` projects the 3D joints with the pinhole intrinsics instead of
    reading 2D keypoints (lens distortion ignored).
    """

    def __init__(self, path_3d: str | Path, path_2d: Optional[str | Path] = None,
                 subjects: Sequence[str] = TRAIN_SUBJECTS, actions: Optional[Sequence[str]] = None,
                 stride: int = 1, cameras: Optional[Sequence[int]] = None) -> None:
        if int(stride) < 1:
            raise UserError(f"H36MDataset: stride must be >= 1, got {stride}")
        cameras = checked_selection(subjects, cameras, "H36MDataset")
        path_3d, data_3d, path_2d, data_2d = load_h36m(path_3d, path_2d)

        pose2d, pose3d, roots, cams, meta = [], [], [], [], []
        self.sequences: list[tuple[str, str]] = []  # (subject, action) of each sequence id
        for seq in camera_sequences(path_3d, data_3d, path_2d, data_2d, subjects, actions, cameras):
            if not self.sequences or self.sequences[-1] != (seq.subject, seq.action):
                self.sequences.append((seq.subject, seq.action))
            fx, fy, cx, cy = seq.intrinsics
            w, h = seq.size
            cam3d, px = seq.joints3d[::stride], seq.joints2d[::stride]
            pose2d.append(normalize_screen(px, w, h))
            pose3d.append(cam3d - cam3d[:, :1])
            roots.append(cam3d[:, 0])
            cams.append(np.repeat(normalized_camera(fx, fy, cx, cy, w, h)[None], len(cam3d), axis=0))
            n = len(cam3d)
            meta.append(np.stack([np.full(n, len(self.sequences) - 1), np.full(n, seq.camera),
                                  np.arange(0, len(seq.joints3d), stride)], axis=1))
        if not meta:
            raise UserError(f"{path_3d}: no frames for subjects {list(subjects)} and actions {list(actions or [])}")
        self.pose2d = np.concatenate(pose2d).astype(np.float32)
        self.pose3d = np.concatenate(pose3d).astype(np.float32)
        self.root_position = np.concatenate(roots).astype(np.float32)
        self.camera = np.concatenate(cams).astype(np.float32)
        # per sample: sequence id (into self.sequences), camera index, frame
        self.sample_meta = np.concatenate(meta).astype(np.int64)

    @classmethod
    def from_root(cls, root: str | Path, subjects: Sequence[str] = TRAIN_SUBJECTS, keypoints: Optional[str] = "gt",
                  actions: Optional[Sequence[str]] = None, stride: int = 1,
                  cameras: Optional[Sequence[int]] = None) -> "H36MDataset":
        """``keypoints``: the 2D file suffix (``gt``, ``cpn_ft_h36m_dbb``, ...) or ``projected``."""
        return cls(*h36m_paths(root, keypoints), subjects, actions, stride, cameras)

    @staticmethod
    def _check_metadata(path: Path) -> None:
        npz = open_npz(path, allow_pickle=True)  # metadata is a pickled dict too (format requirement)
        if "metadata" not in npz.files:
            return
        meta = npz["metadata"]
        meta = meta.item() if meta.dtype == object and meta.shape == () else None
        if not isinstance(meta, dict):
            raise UserError(f"{path}: 'metadata' must be a pickled dict")
        layout = meta.get("layout_name", "h36m")
        if layout != "h36m" or int(meta.get("num_joints", 17)) != 17:
            raise UserError(f"{path}: 2D keypoints use layout '{layout}' with {meta.get('num_joints')} joints; "
                            f"this reader needs the 17-joint h36m layout")

    @staticmethod
    def _keypoints(data_2d: dict, path: Path, subject: str, action: str, frames: int) -> list[np.ndarray]:
        where = f"{path}: positions_2d['{subject}']['{action}']"
        if action not in data_2d[subject]:
            raise UserError(f"{where} is missing (the 3D file has this action)")
        per_camera = data_2d[subject][action]
        if not isinstance(per_camera, (list, tuple)) or len(per_camera) != len(CAMERA_IDS):
            raise UserError(f"{where}: expected a list of {len(CAMERA_IDS)} camera arrays, "
                            f"got {type(per_camera).__name__} of length {len(per_camera) if hasattr(per_camera, '__len__') else '?'}")
        out = []
        for c, kp in enumerate(per_camera):
            kp = check_shape(kp, (None, 17, 2), f"{where}[{c}]")
            # some videos have a few frames more than the motion capture: cut them off
            if kp.shape[0] < frames:
                raise UserError(f"{where}[{c}]: {kp.shape[0]} frames of 2D keypoints for {frames} frames of 3D poses")
            kp = kp[:frames]
            check_finite(kp, f"{where}[{c}]")
            out.append(kp)
        return out

    def sample_info(self, index: int) -> tuple[str, str, int, int]:
        """(subject, action, camera index, frame) of sample ``index``."""
        sequence, camera, frame = (int(v) for v in self.sample_meta[index])
        return (*self.sequences[sequence], camera, frame)

    def __len__(self) -> int:
        return len(self.sample_meta)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = int(index)
        return pose_item(i, self.pose2d[i], self.pose3d[i], self.camera[i], self.root_position[i])
