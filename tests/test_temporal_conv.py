"""The dilated temporal convolutions of the dual network's TCNs: receptive field, which frames an
output sees (centred or causal), and the padding that keeps one output per frame."""
from __future__ import annotations

import pytest
import torch

from framework.errors import UserError
from nets.temporal_conv import TemporalConvNet


def net(**kwargs) -> TemporalConvNet:
    torch.manual_seed(0)
    return TemporalConvNet(34, 51, channels=16, **kwargs).eval()


def test_the_papers_widths_see_243_frames_and_shorten_the_sequence_by_them():
    tcn = net()
    assert tcn.receptive_field == 243
    assert tcn(torch.randn(2, 250, 34)).shape == (2, 8, 51)
    small = net(widths=(3, 3))
    assert small(small.pad_sequence(torch.randn(1, 12, 34))).shape == (1, 12, 51)


@pytest.mark.parametrize("causal", [False, True])
def test_an_output_sees_exactly_its_window(causal):
    tcn = net(widths=(3, 3, 3), causal=causal)  # 27 frames
    x = torch.randn(1, 40, 34)
    with torch.no_grad():
        base = tcn(x)  # 14 outputs; output i sees input frames i .. i + 26
        for frame, changed in ((5, range(0, 6)), (26, range(0, 14)), (30, range(4, 14))):
            y = x.clone()
            y[0, frame] += 1.0
            moved = (tcn(y) - base).abs().amax(-1)[0] > 1e-6
            assert moved.nonzero().flatten().tolist() == list(changed)
    # padded, output t stands for frame t: centred it sees 13 frames ahead, causal none
    with torch.no_grad():
        frame30 = tcn(tcn.pad_sequence(x))[0, 30]
        y = x.clone()
        y[0, 35] += 1.0
        assert torch.equal(tcn(tcn.pad_sequence(y))[0, 30], frame30) is causal


def test_bad_inputs_are_one_error():
    with pytest.raises(UserError, match="widths must be odd"):
        TemporalConvNet(34, 51, widths=(3, 2))
    with pytest.raises(UserError, match="10 frames, fewer than the receptive field of 27"):
        net(widths=(3, 3, 3))(torch.randn(1, 10, 34))
    with pytest.raises(UserError, match=r"\(batch, frames, 34\)"):
        net()(torch.randn(1, 300, 17, 2))
