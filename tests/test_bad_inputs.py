"""Bad inputs stop with one clear error that names the thing (exit status 2 on the command
line, ``UserError`` in process), never a traceback, a silent NaN or unpickled code."""
import json
import math
import os
import pickle

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from adapt import adapt as adapt_main
from framework.cli import RUN_DIR_ENV
from framework.errors import UserError
from framework.io import AtomicCheckpointIO, atomic_write, write_json
from lightning_modules.iso import ISOModule
from tests.commands import QUICK, TINY, cli, report
from tests.tiny import RandomPoses, tiny_iso


@pytest.fixture
def tiny_ckpt(tmp_path):
    """A checkpoint of an untrained width-32 ISO model, as adapt.py reads them."""
    torch.manual_seed(0)
    path = tmp_path / "tiny.ckpt"
    torch.save({"method": "iso", "state_dict": ISOModule("iso", {"width": 32}).state_dict()}, path)
    return path


@pytest.fixture
def adapt(monkeypatch, tmp_path):
    """adapt.py's main function in this process (quick config, tiny overrides, output under tmp_path)."""
    monkeypatch.setenv(RUN_DIR_ENV, "")
    monkeypatch.delenv(RUN_DIR_ENV)  # monkeypatch now unsets it again after the test

    def run(*overrides):
        os.environ.pop(RUN_DIR_ENV, None)  # adapt.py records its run folder here for DDP workers
        return adapt_main(["--config", QUICK, *TINY, "logger.kinds=[]", "pictures.enabled=false",
                           f"output_dir={tmp_path / 'out'}", *overrides])

    return run


def write_3dhp(root, n=6, **override):
    """An MPI-INF-3DHP test-set npz (pixels, millimetres) with ``override`` arrays replaced (None: left out)."""
    rng = np.random.default_rng(3)
    arrays = {"pose2d": rng.uniform(0, 2048, size=(n, 17, 2)),
              "pose3d": rng.normal(0, 300, size=(n, 17, 3)) + [0, 0, 4000],
              "image_size": np.array([2048, 2048])}
    arrays.update(override)
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "mpi_inf_3dhp_test.npz", **{k: v for k, v in arrays.items() if v is not None})


def nan_at(shape, value):
    a = np.random.default_rng(4).uniform(0, 2048, size=shape)
    a[2, 5, 1] = value
    return a


# ------------------------------------------------------------------ data
def test_missing_data_root_names_the_key_on_the_command_line(tmp_path, tiny_ckpt):
    proc = cli("adapt.py", tmp_path, "data.target.kind=mpi_inf_3dhp", "data.target.root=/nope", f"ckpt={tiny_ckpt}",
               check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: data.target.root: /nope does not exist"


@pytest.mark.parametrize("arrays,message", [
    ({"pose3d": None}, "missing array 'pose3d'"),
    ({"pose3d": np.zeros((6, 16, 3))}, r"pose3d: expected shape \(6, 17, 3\), got \(6, 16, 3\)"),
    ({"pose2d": np.zeros((6, 17))}, r"pose2d: expected shape \(N, 17, 2\), got \(6, 17\)"),
    ({"pose2d": nan_at((6, 17, 2), math.nan)}, "pose2d: contains 1 NaN/Inf values"),
    ({"pose3d": nan_at((6, 17, 3), math.inf)}, "pose3d: contains 1 NaN/Inf values"),
])
def test_bad_3dhp_file_names_the_file_and_the_array(adapt, tmp_path, tiny_ckpt, arrays, message):
    root = tmp_path / "3dhp"
    write_3dhp(root, **arrays)
    with pytest.raises(UserError, match=f"mpi_inf_3dhp_test.npz: {message}"):
        adapt("data.target.kind=mpi_inf_3dhp", f"data.target.root={root}", f"ckpt={tiny_ckpt}")


def test_a_good_3dhp_file_adapts(adapt, tmp_path, tiny_ckpt):
    """The control for the test above: the same file without the defect goes through."""
    write_3dhp(tmp_path / "3dhp")
    assert adapt("data.target.kind=mpi_inf_3dhp", f"data.target.root={tmp_path / '3dhp'}", f"ckpt={tiny_ckpt}") == 0
    rep = report(tmp_path / "out" / "iso" / "quick_adapt")
    assert all(math.isfinite(v) for v in rep["after"].values())


@pytest.mark.parametrize("key,value", [("pose2d", math.nan), ("pose3d", math.inf)])
def test_nan_or_inf_in_a_training_batch_stops_training(key, value):
    data = RandomPoses(8)
    getattr(data, key)[5, 3, 0] = value
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    with pytest.raises(ValueError, match=f"'{key}' contains NaN or Inf"):
        trainer.fit(tiny_iso(), torch.utils.data.DataLoader(data, batch_size=4))


# ------------------------------------------------------------------ checkpoints
def test_checkpoint_of_another_method_is_refused(adapt, tmp_path):
    path = tmp_path / "raft.ckpt"
    torch.save({"method": "raft", "state_dict": {"fnet.weight": torch.zeros(3, 3)}}, path)
    with pytest.raises(UserError, match=f"checkpoint {path} was written by method 'raft', not 'iso'"):
        adapt(f"ckpt={path}")


def test_checkpoint_that_does_not_fit_the_model_names_the_mismatch(adapt, tiny_ckpt):
    with pytest.raises(UserError, match=r"does not fit the model in the config \(shape mismatch in \['net\."):
        adapt(f"ckpt={tiny_ckpt}", "model.width=48")


def test_missing_checkpoint_names_the_path(adapt, tmp_path):
    with pytest.raises(UserError, match=f"checkpoint not found: {tmp_path / 'nowhere.ckpt'}"):
        adapt(f"ckpt={tmp_path / 'nowhere.ckpt'}")


class Payload:
    """Unpickling this creates a file: proof that a loader executed code from the checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_non_checkpoint_pickle_is_refused_not_executed(adapt, tmp_path, writer):
    marker, path = tmp_path / "executed", tmp_path / "evil.ckpt"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(Payload(marker)))
    else:
        torch.save({"method": "iso", "state_dict": {}, "extra": Payload(marker)}, path)
    with pytest.raises(UserError, match=f"checkpoint {path} could not be read safely \\(weights_only=True\\)"):
        adapt(f"ckpt={path}")
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload(marker)))  # the payload is real: an unsafe load runs it
    assert marker.exists()


# ------------------------------------------------------------------ config
def test_missing_config_file_on_the_command_line(tmp_path):
    proc = cli("adapt.py", tmp_path, config=str(tmp_path / "nowhere.yaml"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: config file not found: {tmp_path / 'nowhere.yaml'}"


# ------------------------------------------------------------------ atomic writes
def failing_writer(f):
    f.write("partial" if "b" not in f.mode else b"partial")
    f.flush()
    raise RuntimeError("disk full")


def test_atomic_write_keeps_the_old_file_and_no_temporary_when_the_writer_fails(tmp_path):
    path = tmp_path / "report.json"
    write_json(path, {"mpjpe": 1.0})
    old = path.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, failing_writer, mode="w")
    with pytest.raises(TypeError):  # json.dump fails after writing part of the document
        write_json(path, {"mpjpe": 2.0, "bad": object()})
    with pytest.raises(KeyboardInterrupt):  # an interrupt midway, too
        atomic_write(path, lambda f: (f.write(b"{"), (_ for _ in ()).throw(KeyboardInterrupt())))
    assert path.read_bytes() == old and json.loads(old) == {"mpjpe": 1.0}
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "new.bin", failing_writer)
    assert sorted(os.listdir(tmp_path)) == ["report.json"]  # no new.bin, no temporary files


def test_checkpoint_writer_keeps_the_old_checkpoint_when_saving_fails(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    with pytest.raises(Exception):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "hook": lambda: None}, path)  # not picklable
    assert torch.equal(io.load_checkpoint(path)["state_dict"]["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_a_failed_adapt_leaves_no_run_folder_behind(adapt, tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    for _ in range(2):
        with pytest.raises(UserError, match="is empty"):
            adapt(f"ckpt={empty}")
    assert not (tmp_path / "out" / "iso").exists() or not any((tmp_path / "out" / "iso").iterdir())
