"""Real 2-process DDP on the CPU (gloo): one run folder, checkpoints written once, every
test sample scored exactly once, adaptation that each rank does alone (no all-reduce), and
per-video refinement that sees each whole video on one rank."""
import json
import math

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from callbacks.per_instance import PerInstanceAdaptation, PerInstanceAdaptationConfig
from datamodules.sampling import VideoShardSampler
from framework.errors import UserError
from tests.commands import (BOOTSTRAP_QUICK, BOOTSTRAP_TINY, DDP, METRICS, PIPS_QUICK, PIPS_TINY, RAFT_QUICK, RAFT_TINY,
                            cli, report, subdirs)
from tests.tiny import batch_of, tiny_iso

# a fixed view makes the adaptation objective deterministic; vanilla mode makes each instance independent
FIXED_VIEW = ("model.azimuth_deg=[40,40]", "model.elevation_deg=[10,10]")
DETERMINISTIC_ADAPTATION = (*FIXED_VIEW, "adaptation.mode=vanilla", "adaptation.steps=3", "adaptation.lr=1e-2")


@pytest.fixture(scope="module")
def ddp_trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    proc = cli("train.py", out, *DDP, "trainer.max_epochs=1")
    return out, proc


def test_ddp_training_writes_one_run_folder_and_its_checkpoints_once(ddp_trained):
    out, proc = ddp_trained
    assert subdirs(out / "iso") == ["quick"]  # both ranks chose the same folder
    run = out / "iso" / "quick"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml", "logs", "metrics.json"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert subdirs(run / "logs") == ["version_0"]
    assert proc.stdout.count("run folder:") == 1 and proc.stdout.count("source-domain test:") == 1  # rank 0 only
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert set(metrics) == METRICS and all(math.isfinite(v) for v in metrics.values())
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["method"] == "iso" and ckpt["epoch"] == 0


def test_ddp_adaptation_scores_each_sample_once_and_matches_one_process(ddp_trained, tmp_path):
    out, _ = ddp_trained
    ckpt = out / "iso" / "quick" / "checkpoints" / "best.ckpt"
    ddp = cli("adapt.py", tmp_path / "ddp", *DDP, *DETERMINISTIC_ADAPTATION, f"ckpt={ckpt}")
    cli("adapt.py", tmp_path / "one", *DETERMINISTIC_ADAPTATION, f"ckpt={ckpt}")
    assert subdirs(tmp_path / "ddp" / "iso") == ["quick_adapt"]
    assert ddp.stdout.count("report:") == 1
    two, one = report(tmp_path / "ddp/iso/quick_adapt"), report(tmp_path / "one/iso/quick_adapt")
    assert set(two["before"]) == set(one["before"]) == METRICS
    for key in METRICS:
        # 37 samples, DistributedSampler pads rank 1 with a repeat of sample 0: counting it twice would move
        # the mean by ~1/38 of a sample's deviation; what remains is float32 summation order
        assert two["before"][key] == pytest.approx(one["before"][key], rel=1e-6, abs=1e-5), key
        assert two["after"][key] == pytest.approx(one["after"][key], rel=1e-4, abs=1e-4), key
    assert abs(one["after"]["mpjpe"] - one["before"]["mpjpe"]) > 0.1  # the adaptation did something


def test_adaptation_steps_the_plain_module_never_through_ddp(tmp_path):
    """The callback's gradients never reach a DDP wrapper's all-reduce, even around the same module."""
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    module = tiny_iso(azimuth_deg=[40.0, 40.0], elevation_deg=[10.0, 10.0])
    batch = batch_of(3)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        wrapped = DistributedDataParallel(module, find_unused_parameters=True)
        all_reduced = []

        def count(state, bucket):
            all_reduced.append(bucket.index())
            done = torch.futures.Future()
            done.set_result(bucket.buffer())
            return done

        wrapped.register_comm_hook(None, count)
        wrapped(batch)["pose3d"].sum().backward()  # a step through the wrapper does all-reduce ...
        assert all_reduced
        all_reduced.clear()
        module.zero_grad(set_to_none=True)

        before = {n: p.detach().clone() for n, p in module.named_parameters()}
        callback = PerInstanceAdaptation(PerInstanceAdaptationConfig(mode="online", steps=2, copies=4, lr=1e-3))
        module.eval()
        callback.on_test_start(trainer, module)
        with torch.inference_mode():
            callback.on_test_batch_start(trainer, module, dict(batch), 0)
        assert not all_reduced  # ... adaptation does not
        own = {id(p) for p in module.parameters()}
        stepped = [p for opt in callback.optimizers.values() for g in opt.param_groups for p in g["params"]]
        assert stepped and all(id(p) in own for p in stepped)
        moved = {n for n, p in module.named_parameters() if not torch.equal(p, before[n])}
        assert moved and moved <= set(sum(module.adaptation_groups().values(), []))
    finally:
        dist.destroy_process_group()


def test_video_shards_give_each_rank_whole_videos_in_order():
    # videos of 3, 1, 2 and 2 items (dataset indices out of order in the dataset), item 8 in no video
    videos = [[2, 0, 1], [3], [5, 4], [6, 7]]
    shards = [list(VideoShardSampler(range(9), videos, 2, rank)) for rank in (0, 1)]
    assert shards == [[2, 0, 1, 3, 8], [5, 4, 6, 7]]  # longest first to the least loaded rank
    assert sorted(shards[0] + shards[1]) == list(range(9))
    assert len(VideoShardSampler(range(9), videos, 2, 1)) == 4
    # more ranks than videos: the idle rank repeats the shortest video (Lightning skips epoch-end hooks without a batch)
    assert list(VideoShardSampler(range(3), [[0, 1, 2]], 2, 1)) == [0, 1, 2]
    with pytest.raises(UserError, match="repeat an item"):
        VideoShardSampler(range(4), [[0, 1], [1, 2]], 2, 0)
    with pytest.raises(UserError, match="outside its 4 items"):
        VideoShardSampler(range(4), [[0, 4]], 2, 0)


@pytest.mark.parametrize("method", ["raft", "pips"])
def test_test_loaders_under_ddp_shard_whole_videos(method):
    from types import SimpleNamespace

    from datamodules.optical_flow import OpticalFlowDataModule
    from datamodules.point_tracking import PointTrackingDataModule
    small = {"height": 64, "width": 72, "frames": 4} if method == "raft" else {"height": 64, "width": 64, "frames": 8}
    cls = OpticalFlowDataModule if method == "raft" else PointTrackingDataModule
    dm = cls({"target": {"synthetic": small}, "test_videos": 3}, test_domain="target")
    dm.setup("test")
    seen = []
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        sampler = dm.test_dataloader().sampler
        assert isinstance(sampler, VideoShardSampler)
        seen.append([int(dm.domain_dataset("target", "test")[i]["video"]) for i in sampler])
    per_video = 3 if method == "raft" else 1  # frame pairs or whole videos
    assert seen == [[0] * per_video + [2] * per_video, [1] * per_video]
    dm.trainer = SimpleNamespace(world_size=1, global_rank=0)
    assert not isinstance(dm.test_dataloader().sampler, VideoShardSampler)


# the refinement methods, tiny: config, settings, a metric; 3 test videos so that they split unevenly
VIDEO_METHODS = {"raft": (RAFT_QUICK, RAFT_TINY, "epe"), "pips": (PIPS_QUICK, PIPS_TINY, "ate_vis"),
                 "bootstrap": (BOOTSTRAP_QUICK, BOOTSTRAP_TINY, "mpjpe")}


@pytest.mark.parametrize("method", sorted(VIDEO_METHODS))
def test_ddp_refines_each_video_once_on_one_rank(method, tmp_path):
    config, tiny, metric = VIDEO_METHODS[method]

    def run(script, out, *extra):
        return cli(script, tmp_path / out, *extra, "data.test_videos=3", config=config, tiny=tiny)

    train = run("train.py", "train", *DDP)
    assert subdirs(tmp_path / "train" / method) == ["quick"] and train.stdout.count("run folder:") == 1
    ckpt = tmp_path / "train" / method / "quick" / "checkpoints" / "best.ckpt"
    run("adapt.py", "ddp", *DDP, f"ckpt={ckpt}")
    run("adapt.py", "one", f"ckpt={ckpt}")
    two, one = report(tmp_path / "ddp" / method / "quick_adapt"), report(tmp_path / "one" / method / "quick_adapt")
    for stage in ("before", "after"):
        assert set(two[stage]) == set(one[stage]) and metric in one[stage]
    for key in one["before"]:
        assert two["before"][key] == pytest.approx(one["before"][key], rel=1e-5, abs=1e-4), key
    # one report per video, gathered from both ranks; each video refined on whole, as in one process
    videos = [v["video"] for v in two["adaptation"]["summary"]["videos"]]
    assert videos == [v["video"] for v in one["adaptation"]["summary"]["videos"]] == [0, 1, 2]
    for a, b in zip(two["adaptation"]["summary"]["videos"], one["adaptation"]["summary"]["videos"]):
        assert a.get("steps") == b.get("steps") and a.get("labels") == b.get("labels"), (a, b)
        assert [r["round"] for r in a.get("rounds", [])] == [r["round"] for r in b.get("rounds", [])], (a, b)


def test_pips_footage_test_loader_under_ddp_gives_the_one_video_to_one_rank(tmp_path):
    """User footage is one video: one rank gets it whole, the other none (not a crash on its listing)."""
    from types import SimpleNamespace

    from datamodules.point_tracking import PointTrackingDataModule
    from datamodules.videos import VideoSpan
    from tests.test_footage import write_folder
    write_folder(tmp_path / "clip", count=8, height=64, width=64)
    dm = PointTrackingDataModule({"target": {"kind": "footage", "root": str(tmp_path / "clip")}},
                                 test_domain="target")
    dm.setup("test")
    shards = []
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        sampler = dm.test_dataloader().sampler
        assert isinstance(sampler, VideoShardSampler)
        shards.append(list(sampler))
    assert shards == [[0], [0]]  # the idle rank repeats the one video
    assert dm.domain_dataset("target", "test").videos() == {0: VideoSpan("clip", [0])}


def test_pips_on_one_footage_clip_under_2_process_ddp_matches_one_process(tmp_path):
    """One video on two ranks: rank 1 is handed nothing, yet takes the same metric branch as rank 0
    (a per-rank branch would leave the ranks waiting on different collectives)."""
    from tests.test_pips_module import write_frames
    cli("train.py", tmp_path / "train", config=PIPS_QUICK, tiny=PIPS_TINY)
    ckpt = tmp_path / "train" / "pips" / "quick" / "checkpoints" / "best.ckpt"
    footage = ("data.target.kind=footage", f"data.target.root={write_frames(tmp_path / 'clip', 9)}",
               "adaptation.labels.clip_stride=1", f"ckpt={ckpt}")
    cli("adapt.py", tmp_path / "ddp", *DDP, *footage, config=PIPS_QUICK, tiny=PIPS_TINY, timeout=240)
    cli("adapt.py", tmp_path / "one", *footage, config=PIPS_QUICK, tiny=PIPS_TINY)
    two, one = report(tmp_path / "ddp/pips/quick_adapt"), report(tmp_path / "one/pips/quick_adapt")
    assert set(two["before"]) == {"cycle_consistent_pct"}
    assert two["before"] == pytest.approx(one["before"]) and two["after"] == pytest.approx(one["after"])
    assert [v["video"] for v in two["adaptation"]["summary"]["videos"]] == [0]
    assert (tmp_path / "ddp/pips/quick_adapt/tracks/0000.npz").is_file()
