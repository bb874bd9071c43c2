"""framework.io: a bad checkpoint path is one clear line that says what is wrong with it, and
files written atomically get the permissions a plain ``open(path, "w")`` would give them."""
import os
import stat

import pytest
import torch

from framework.errors import UserError
from framework.io import atomic_write, load_checkpoint, save_torch, write_json, write_text


class Opaque:
    """A class weights_only=True refuses: a checkpoint holding one must not be unpickled."""


def refused(path):
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "weights_only=False" not in message and "IndexError" not in message
    return message


def test_empty_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"")
    assert refused(path) == (f"checkpoint {path} is empty (0 bytes): the run that wrote it was probably "
                             f"interrupted; use another checkpoint")


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.ckpt"
    path.write_bytes(bytes(range(256)) * 4 + os.urandom(1024))
    assert f"checkpoint {path} is not a readable PyTorch checkpoint (corrupt or truncated?)" in refused(path)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_truncated_checkpoint(tmp_path, zipped):
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.ones(256)}}, path, _use_new_zipfile_serialization=zipped)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    assert f"checkpoint {path} is not a readable PyTorch checkpoint (corrupt or truncated?)" in refused(path)


def test_real_checkpoint_with_unsafe_objects_is_not_loaded(tmp_path):
    path = tmp_path / "objects.ckpt"
    torch.save({"state_dict": {}, "extra": Opaque()}, path)
    message = refused(path)
    assert "holds Python objects that cannot be loaded safely" in message
    assert "Opaque" in message and "corrupt" not in message


def test_folder_is_not_a_checkpoint(tmp_path):
    assert refused(tmp_path) == f"checkpoint {tmp_path} is a folder, not a file"
    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {}}, last)
    assert refused(tmp_path) == f"checkpoint {tmp_path} is a folder, not a file; did you mean {last}?"
    other = tmp_path / "other"
    other.mkdir()
    torch.save({"state_dict": {}}, other / "epoch=3.ckpt")
    assert refused(other).endswith(f"; did you mean {other / 'epoch=3.ckpt'}?")


def test_missing_checkpoint(tmp_path):
    assert refused(tmp_path / "nowhere.ckpt") == f"checkpoint not found: {tmp_path / 'nowhere.ckpt'}"


def test_real_checkpoint_round_trips(tmp_path):
    path = tmp_path / "good.ckpt"
    save_torch(path, {"method": "iso", "state_dict": {"w": torch.arange(5.0)}, "epoch": 2})
    ckpt = load_checkpoint(path)
    assert ckpt["method"] == "iso" and ckpt["epoch"] == 2
    assert torch.equal(ckpt["state_dict"]["w"], torch.arange(5.0))


@pytest.fixture
def umask():
    def set_umask(mask):
        os.umask(mask)
    old = os.umask(0o022)
    try:
        yield set_umask
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_follow_the_umask(tmp_path, umask):
    umask(0o022)
    write_json(tmp_path / "report.json", {"mpjpe": 1.0})
    write_text(tmp_path / "config.yaml", "a: 1\n")
    save_torch(tmp_path / "last.ckpt", {"state_dict": {}})
    atomic_write(tmp_path / "raw.bin", lambda f: f.write(b"x"))
    for name in ["report.json", "config.yaml", "last.ckpt", "raw.bin"]:
        assert mode(tmp_path / name) == 0o644, name
    umask(0o027)
    write_json(tmp_path / "report.json", {"mpjpe": 2.0})  # replacing a file, too
    assert mode(tmp_path / "report.json") == 0o640
    assert sorted(os.listdir(tmp_path)) == ["config.yaml", "last.ckpt", "raw.bin", "report.json"]
