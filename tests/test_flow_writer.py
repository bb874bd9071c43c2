"""FlowWriter: each predicted test flow lands on disk as a .flo that reads back exactly, plus its picture."""
import cv2
import numpy as np
import torch

from callbacks.flow_writer import FlowWriter
from datamodules.readers.flow_formats import read_flo


def _flow(seed=0, batch=2, height=16, width=24):
    return torch.randn(batch, 2, height, width, generator=torch.Generator().manual_seed(seed)) * 3


def test_writes_flo_and_png_named_by_video_and_frame(tmp_path):
    folder = tmp_path / "out" / "flows"
    writer = FlowWriter(folder)
    flow = _flow()
    batch = {"index": torch.tensor([7, 8]), "video": torch.tensor([0, 0]), "frame": torch.tensor([3, 4])}
    writer.on_test_batch_end(None, None, {"flow": flow}, batch, 0)
    assert writer.written == [folder / "000_00003.flo", folder / "000_00004.flo"]
    for i, path in enumerate(writer.written):
        assert np.array_equal(read_flo(path), flow[i].permute(1, 2, 0).numpy())
        picture = cv2.imread(str(path.with_suffix(".png")))
        assert picture.shape == (16, 24, 3)
    assert sorted(p.name for p in folder.iterdir()) == ["000_00003.flo", "000_00003.png",
                                                       "000_00004.flo", "000_00004.png"]


def test_names_by_index_without_video(tmp_path):
    writer = FlowWriter(tmp_path)
    flow = _flow(seed=1, batch=1)
    writer.on_test_batch_end(None, None, {"flow": flow, "loss": torch.tensor(1.0)}, {"index": torch.tensor([12])}, 0)
    assert writer.written == [tmp_path / "000012.flo"]
    assert (tmp_path / "000012.png").is_file()
    assert np.array_equal(read_flo(tmp_path / "000012.flo"), flow[0].permute(1, 2, 0).numpy())


def test_inactive_or_no_flow_writes_nothing(tmp_path):
    folder = tmp_path / "flows"
    writer = FlowWriter(folder)
    writer.active = False
    writer.on_test_batch_end(None, None, {"flow": _flow()}, {"index": torch.tensor([0, 1])}, 0)
    writer.active = True
    writer.on_test_batch_end(None, None, None, {"index": torch.tensor([0, 1])}, 0)
    writer.on_test_batch_end(None, None, {"loss": torch.tensor(0.0)}, {"index": torch.tensor([0, 1])}, 0)
    assert writer.written == [] and not folder.exists()
