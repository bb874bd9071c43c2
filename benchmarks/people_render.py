"""How fast the synthetic people world renders a frame with all its ground truth, on one CPU core.

Per frame: the RGB image, the exact forward flow and its occlusion mask, and every person's 2D and
3D joints, visibility, COCO keypoints and box (part, person and depth images come with the cast).
Each video is drawn fresh (its scene: people, motion, body model, textures, camera) and walked
frame by frame, as a loader walking a video in order would; the scene's cost is reported apart.
The target is under 50 ms a 256 x 256 frame with 2 people, so that the DataLoader, not the
renderer, paces training. Results: benchmarks/results/people_render.{json,md}.

    OMP_NUM_THREADS=1 python benchmarks/people_render.py
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datamodules.synthetic.people_datasets import motion_blur  # noqa: E402
from datamodules.synthetic.people_render import PeopleRenderer  # noqa: E402
from datamodules.synthetic.people_scenes import PeopleScene, as_people_domain  # noqa: E402
from framework.io import write_json, write_text  # noqa: E402
from nets.body_model import ProceduralBody  # noqa: E402

TARGET_MS = 50.0


def measure(domain_name: str, people: int, size: int, videos: int, frames: int) -> dict:
    domain = dataclasses.replace(as_people_domain(domain_name), people=[people, people], width=size, height=size,
                                 frames=frames)
    body = ProceduralBody()
    parts = body.joint_parts()
    scene_ms, frame_ms = [], []
    for video in range(videos):
        start = time.perf_counter()
        renderer = PeopleRenderer(PeopleScene(domain, 0, video, body), parts)
        scene_ms.append(1000 * (time.perf_counter() - start))
        for t in range(frames):
            start = time.perf_counter()
            renderer.image(t)
            renderer.flow(t)
            renderer.people(t)
            frame_ms.append(1000 * (time.perf_counter() - start))
    return {"domain": domain_name, "people": people, "size": size, "videos": videos, "frames": frames,
            "frame_ms_mean": statistics.fmean(frame_ms), "frame_ms_median": statistics.median(frame_ms),
            "frame_ms_max": max(frame_ms), "scene_ms_mean": statistics.fmean(scene_ms),
            "per_frame_ms_with_scene": statistics.fmean(frame_ms) + statistics.fmean(scene_ms) / frames}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--results", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(name, people, 256, args.videos, args.frames) for name, people in
            (("studio", 1), ("studio", 2), ("street", 2), ("street", 4))]
    meta = {"command": " ".join(["python", "benchmarks/people_render.py"] + sys.argv[1:]), "device": "CPU",
            "threads": torch.get_num_threads(), "target_ms": TARGET_MS}
    results = Path(args.results)
    write_json(results / "people_render.json", {"meta": meta, "rows": rows})
    lines = [f"# Synthetic people: render time per frame ({meta['device']}, {meta['threads']} thread)", "",
             f"Command: `OMP_NUM_THREADS=1 {meta['command']}`", "",
             "| domain | people | frame size | ms / frame (mean) | median | max | scene ms / video | ms / frame incl. scene |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['domain']} | {r['people']} | {r['size']}x{r['size']} | {r['frame_ms_mean']:.1f} | "
              f"{r['frame_ms_median']:.1f} | {r['frame_ms_max']:.1f} | {r['scene_ms_mean']:.0f} | "
              f"{r['per_frame_ms_with_scene']:.1f} |" for r in rows]
    lines += ["", f"A frame is the image, the exact forward flow with its occlusion mask, and every person's joints, "
              f"visibility, keypoints and box. Target: under {TARGET_MS:.0f} ms for 2 people at 256x256. Motion blur "
              f"(street) adds {blur_ms():.1f} ms a frame in the datasets."]
    write_text(results / "people_render.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def blur_ms() -> float:
    image, flow = np.random.rand(256, 256, 3).astype(np.float32) * 255, np.random.randn(256, 256, 2).astype(np.float32)
    start = time.perf_counter()
    for _ in range(20):
        motion_blur(image, flow, 0.5)
    return 1000 * (time.perf_counter() - start) / 20


if __name__ == "__main__":
    sys.exit(main())
