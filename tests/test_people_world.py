"""The synthetic people world: exact flow, depth order, visibility, determinism, domains, datasets."""
import copy
import dataclasses

import numpy as np
import pytest
import torch

from datamodules.synthetic.motions import ACTION_NAMES, JOINT_NAMES, LIMITS, limit_kind
from datamodules.synthetic.people_datasets import PeopleCrops, PeopleFlowPairs, PeopleFrames
from datamodules.synthetic.people_render import PeopleRenderer
from datamodules.synthetic.people_scenes import PeopleScene, as_people_domain, pose_collection, validate_people_domain
from framework.errors import UserError
from geometry.flow import backward_warp
from geometry.rotations import axis_angle_to_matrix
from nets.body_model import ProceduralBody

BODY = ProceduralBody()
JOINT_PARTS = BODY.joint_parts()


def small(name, **overrides):
    d = as_people_domain(name)
    return dataclasses.replace(d, **{"width": 128, "height": 128, "frames": 6, **overrides})


def renderer(domain, video=0, seed=0):
    return PeopleRenderer(PeopleScene(domain, seed, video, BODY), JOINT_PARTS)


def labels(g):
    return np.where(g.person >= 0, g.person * 100 + g.part, 1000 + g.plane)


def warp_error(r, frame, flow):
    """Per-pixel |frame - frame+1 warped back by flow| and the pixels whose whole bilinear
    footprint in the next frame shows the same surface (no silhouette edge in between)."""
    image = lambda t: torch.from_numpy(r.image(t)).permute(2, 0, 1)[None].double()  # noqa: E731
    warped, inside = backward_warp(image(frame + 1), torch.from_numpy(flow).permute(2, 0, 1)[None].double())
    error = (warped - image(frame)).abs().mean(1)[0].numpy()
    now, nxt = labels(r.geometry(frame)), labels(r.geometry(frame + 1))
    h, w = now.shape
    tx, ty = np.arange(w)[None] + flow[..., 0], np.arange(h)[:, None] + flow[..., 1]
    same = inside[0].numpy() > 0
    for dx in (0, 1):
        for dy in (0, 1):
            xi = np.clip(np.floor(tx).astype(int) + dx, 0, w - 1)
            yi = np.clip(np.floor(ty).astype(int) + dy, 0, h - 1)
            same &= nxt[yi, xi] == now
    return error, same


def test_flow_is_exact_up_to_interpolation():
    for video in range(2):
        r = renderer(small("studio", people=[2, 2], camera_drift=[0.2, 0.3]), video)
        flow, occluded = r.flow(2)
        error, interior = warp_error(r, 2, flow)
        body = interior & ~occluded & (r.geometry(2).person >= 0)
        assert body.sum() > 300 and np.linalg.norm(flow, axis=-1)[body].mean() > 0.2  # the people move
        assert error[interior & ~occluded].mean() < 0.3 and error[body].mean() < 0.8
        # control: the same warp with the flow one pixel off is several times worse
        off, _ = warp_error(r, 2, flow + np.array([1.0, 0.0], np.float32))
        assert off[body].mean() > 3 * error[body].mean()


def test_occlusion_mask_marks_points_hidden_next_frame():
    r = renderer(small("street", people=[3, 3]), 1)
    flow, occluded = r.flow(0)
    g, nxt = r.geometry(0), r.geometry(1)
    h, w = occluded.shape
    tx = np.rint(np.arange(w)[None] + flow[..., 0]).astype(int)
    ty = np.rint(np.arange(h)[:, None] + flow[..., 1]).astype(int)
    out = (tx < 0) | (tx >= w) | (ty < 0) | (ty >= h)
    assert occluded[out].all()
    seen = ~occluded & (g.person >= 0)
    lands_on = nxt.person[ty[seen], tx[seen]]
    # a visible body point lands on its own person in the next frame (or, rounded at a silhouette's
    # rim, just beside it), never on someone standing in front of it
    assert (lands_on == g.person[seen]).mean() > 0.9
    assert ((lands_on != g.person[seen]) & (lands_on >= 0)).mean() < 0.01
    assert occluded[g.person >= 0].any()


def test_depth_order_across_people():
    r = renderer(small("street", people=[3, 3], spacing=0.3), 2)
    both = r.geometry(1)
    alone = []
    for p in range(3):
        scene = copy.copy(r.scene)
        scene.people = [r.scene.people[p]]
        scene.states = dataclasses.replace(r.scene.states, **{f.name: getattr(r.scene.states, f.name)[p:p + 1]
                                                              for f in dataclasses.fields(r.scene.states)})
        alone.append(PeopleRenderer(scene, JOINT_PARTS).geometry(1))
    body_depth = np.stack([np.where(g.person >= 0, g.depth, np.inf) for g in alone])
    nearest = body_depth.argmin(0)
    on_body = np.isfinite(body_depth.min(0))
    assert np.array_equal(both.person[on_body], nearest[on_body])
    assert np.allclose(both.depth[on_body], body_depth.min(0)[on_body])
    overlap = (np.isfinite(body_depth).sum(0) > 1)
    assert overlap.sum() > 0  # the people do overlap somewhere, so the order was tested


def test_visibility_agrees_with_the_part_image():
    hidden_by_others = 0
    for video in range(3):
        r = renderer(small("street", people=[4, 4], spacing=0.4), video)
        for frame in (0, 5):
            people, g = r.people(frame), r.geometry(frame)
            for p in range(len(r.scene.people)):
                for j, (x, y) in enumerate(people["joints2d"][p]):
                    xi, yi = int(round(x)), int(round(y))
                    inside = 0 <= xi < 128 and 0 <= yi < 128
                    expect = inside and g.person[yi, xi] == p and g.part[yi, xi] in JOINT_PARTS[j]
                    assert people["joint_visible"][p, j] == expect
                    hidden_by_others += inside and g.person[yi, xi] not in (p, -1)
    assert hidden_by_others > 0  # crowds do occlude each other


def test_datasets_are_deterministic_per_index():
    a, b = PeopleFrames(small("street"), num_videos=3, seed=4), PeopleFrames(small("street"), num_videos=3, seed=4)
    first = a[13]
    b[0], b[7]  # another access order (other caches) must not change the item
    for key, value in b[13].items():
        assert torch.equal(value, first[key]), key
    other = PeopleFrames(small("street"), num_videos=3, seed=5)[13]
    assert not torch.equal(other["image"], first["image"])


def test_source_and_target_differ_as_configured():
    def stats(name):
        people, knees, heights = [], [], []
        for video in range(6):
            scene = PeopleScene(small(name, frames=12), 0, video, BODY)
            people.append(len(scene.people))
            heights.append(scene.camera.centres[0, 1])
            rot = axis_angle_to_matrix(torch.from_numpy(scene.states.pose)).numpy()
            knees.append(np.degrees(np.arccos(np.clip(rot[..., JOINT_NAMES.index("left_knee"), 1, 1], -1, 1))).max())
        return np.mean(people), np.max(knees), np.ptp(heights)
    studio, street = stats("studio"), stats("street")
    assert studio[0] == 1 and street[0] > 1.5
    assert street[1] > studio[1] + 10  # faster, rarer actions bend further
    assert street[2] > studio[2] * 2  # cameras at many more heights
    studio_frames = PeopleFrames(small("studio"), num_videos=2)
    street_frames = PeopleFrames(small("street"), num_videos=2)
    image_std = lambda ds: np.mean([ds[i]["image"].std().item() for i in (0, 6)])  # noqa: E731
    assert image_std(street_frames) > image_std(studio_frames)  # clutter, clothes, noise


def test_motion_has_structure_and_stays_within_limits():
    data = pose_collection(small("studio", actions=["walk"], segments=[1, 1]), sequences=6, frames=50)
    rot = axis_angle_to_matrix(torch.from_numpy(data["pose"])).numpy()
    # hip flexion: the forward (z) component of each thigh's direction
    left, right = -rot[:, JOINT_NAMES.index("left_hip"), 2, 1], -rot[:, JOINT_NAMES.index("right_hip"), 2, 1]
    assert np.corrcoef(left, right)[0, 1] < -0.5  # the legs swing against each other
    step = np.abs(np.diff(data["pose"], axis=0))[np.diff(data["sequence"]) == 0].max()
    assert step < 0.25  # radians between frames at 25 fps: smooth
    everything = pose_collection(small("street"), sequences=20, frames=30, seed=1)
    assert everything["pose"].shape == (600, 15, 3) and np.isfinite(everything["pose"]).all()
    for name in JOINT_NAMES:
        assert LIMITS[limit_kind(name)]
    assert len(ACTION_NAMES) >= 8


def test_crop_labels_match_the_body_parameters():
    ds = PeopleCrops(small("street"), num_videos=2, size=64, crops_per_video=2)
    item = ds[1]
    out = BODY(item["pose"][None].double(), item["betas"][None].double(), item["global_orient"][None].double(),
               item["transl"][None].double())
    assert torch.allclose(out.joints[0].float(), item["joints3d"], atol=1e-4)
    fx, fy, cx, cy = item["camera"]
    j = item["joints3d"]
    assert torch.allclose(torch.stack([fx * j[:, 0] / j[:, 2] + cx, fy * j[:, 1] / j[:, 2] + cy], -1), item["joints2d"],
                          atol=1e-3)
    mask = item["part_mask"]
    assert mask.shape == (64, 64) and 0.05 < (mask > 0).float().mean() < 0.9  # the person fills the crop


def test_flow_pairs_keys_and_videos():
    ds = PeopleFlowPairs(small("street"), num_videos=2)
    assert len(ds) == 10 and [s.indices for s in ds.videos().values()] == [list(range(5)), list(range(5, 10))]
    item = ds[6]
    assert item["joints2d"].shape == (2, 17, 2) and item["flow"].shape == (2, 128, 128)
    assert torch.equal(item["valid"] > 0, ~item["occlusion"]) and item["person_mask"].any()
    assert int(item["video"]) == 1 and int(item["frame"]) == 1


def test_bad_domains_are_one_clear_error():
    with pytest.raises(UserError, match=r"synthetic\.people"):
        validate_people_domain(small("street", people=[3, 1]), "synthetic")
    with pytest.raises(UserError, match="actions"):
        validate_people_domain(small("studio", actions=["moonwalk"]), "synthetic")
    with pytest.raises(UserError, match="betas_mean"):
        validate_people_domain(small("studio", betas_mean=[0.0]), "synthetic")
    with pytest.raises(UserError, match=r"preset: must be one of studio, street"):
        as_people_domain("beach")
    with pytest.raises(UserError, match="unknown key 'persons'"):
        as_people_domain({"preset": "street", "persons": [1, 2]})
    crowd = as_people_domain({"preset": "street", "people": [2, 2]})  # a preset with one field changed
    assert crowd.people == [2, 2] and crowd.noise == as_people_domain("street").noise
    with pytest.raises(UserError, match="frames"):
        PeopleFlowPairs(small("studio", frames=1))


def test_videos_shard_whole_under_ddp():
    from datamodules.sampling import VideoShardSampler
    from datamodules.videos import listed_videos
    for ds in (PeopleFlowPairs(small("studio"), num_videos=3), PeopleFrames(small("street"), num_videos=3),
               PeopleCrops(small("street"), num_videos=3, crops_per_video=2)):
        spans = [s.indices for s in listed_videos(ds).values()]
        ranks = [list(VideoShardSampler(ds, spans, 2, r)) for r in range(2)]
        assert sorted(ranks[0] + ranks[1]) == list(range(len(ds)))
        for video in spans:  # each video lies whole on one rank
            assert any(set(video) <= set(rank) for rank in ranks)


def test_people_pictures_draw_every_dataset():
    from callbacks.people_pictures import IDENTITY_COLOURS, PeoplePictures, people_sample, render_people_panel
    from torch.utils.data import default_collate
    pictures = PeoplePictures(num_samples=2, size=128)
    for ds, panels in ((PeopleFlowPairs(small("studio"), num_videos=1), 2), (PeopleFrames(small("street"), num_videos=1), 2),
                       (PeopleCrops(small("street"), num_videos=1, size=64), 2)):
        batch = default_collate([ds[0], ds[1]])
        samples = pictures.extract(None, batch, 2)
        picture = pictures.render(None, samples[0])
        assert picture.dtype == np.uint8 and picture.shape[0] == 128 and picture.shape[1] >= panels * 128 - 2
    assert pictures.extract(None, {"pose2d": torch.zeros(2, 17, 2)}, 2) is None
    # identity colours: each person's skeleton in its own colour
    frames = PeopleFrames(small("street", people=[2, 2], spacing=1.5), num_videos=1)
    sample = people_sample(default_collate([frames[0]]), 0)
    sample["visible"] = None
    picture = render_people_panel(sample["image"], sample["joints2d"], size=128)
    for p in range(2):
        x, y = np.rint(sample["joints2d"][p, 7]).astype(int)  # the spine joint lies on a drawn bone
        window = picture[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3].reshape(-1, 3).astype(int)
        assert (np.abs(window - np.array(IDENTITY_COLOURS[p])).sum(1) < 60).any(), p


def test_items_do_not_depend_on_the_worker_count():
    from torch.utils.data import DataLoader
    ds = PeopleFrames(small("street", width=48, height=48, frames=3), num_videos=2, seed=1)
    alone = list(DataLoader(ds, batch_size=2, num_workers=0))
    shared = list(DataLoader(ds, batch_size=2, num_workers=2))
    for a, b in zip(alone, shared):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_full_size_frames_texture_planes_of_any_extent():
    r = renderer(small("studio", width=320, height=320))
    image, g = r.image(0), r.geometry(0)
    assert max(int((g.plane == k).sum()) for k in range(5)) > 32767  # more than OpenCV takes in one map side
    assert np.isfinite(image).all() and image.std() > 1
