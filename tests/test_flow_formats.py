"""Flow file formats on tiny files the tests write: round trips and one clear error per corrupt file."""
import cv2
import numpy as np
import pytest

from datamodules.readers.flow_formats import (check_same_size, read_flo, read_image, read_kitti_flow, read_pfm,
                                              read_pfm_flow, write_flo, write_kitti_flow)
from framework.errors import UserError


def write_pfm(path, array, little_endian=True):
    """A (H, W, C) float array as .pfm: rows stored bottom to top, byte order in the scale's sign."""
    array = np.asarray(array, dtype=np.float32)
    kind = b"PF" if array.shape[2] == 3 else b"Pf"
    order = "<" if little_endian else ">"
    scale = b"-1.0" if little_endian else b"1.0"
    header = kind + b"\n" + f"{array.shape[1]} {array.shape[0]}".encode() + b"\n" + scale + b"\n"
    path.write_bytes(header + np.flipud(array).astype(order + "f4").tobytes())


def test_flo_round_trip(tmp_path):
    flow = np.random.default_rng(0).normal(size=(3, 5, 2)).astype(np.float32) * 20
    write_flo(tmp_path / "a.flo", flow)
    back = read_flo(tmp_path / "a.flo")
    assert back.shape == (3, 5, 2) and back.dtype == np.float32
    assert np.array_equal(back, flow)
    raw = (tmp_path / "a.flo").read_bytes()
    assert raw[:4] == b"PIEH" and np.frombuffer(raw[4:12], "<i4").tolist() == [5, 3]


@pytest.mark.parametrize("little_endian", [True, False])
def test_pfm_reads_top_to_bottom_in_both_byte_orders(tmp_path, little_endian):
    data = np.random.default_rng(1).normal(size=(4, 3, 3)).astype(np.float32)
    write_pfm(tmp_path / "f.pfm", data, little_endian)
    assert np.array_equal(read_pfm(tmp_path / "f.pfm"), data)
    flow = read_pfm_flow(tmp_path / "f.pfm")
    assert flow.shape == (4, 3, 2) and np.array_equal(flow, data[..., :2])


def test_kitti_png_channel_order(tmp_path):
    # built by hand: the file's R, G, B are u, v, valid; OpenCV writes B, G, R
    u = np.array([[2 ** 15 + 64, 2 ** 15 - 128]], dtype=np.uint16)  # +1 px, -2 px
    v = np.array([[2 ** 15 + 32, 2 ** 15]], dtype=np.uint16)  # +0.5 px, 0 px
    valid = np.array([[1, 0]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "k.png"), np.stack((valid, v, u), axis=-1))
    flow, mask = read_kitti_flow(tmp_path / "k.png")
    assert np.array_equal(flow[..., 0], [[1.0, -2.0]]) and np.array_equal(flow[..., 1], [[0.5, 0.0]])
    assert mask.tolist() == [[True, False]]


def test_kitti_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    flow = np.round(rng.normal(size=(4, 6, 2)) * 30 * 64) / 64
    valid = rng.random((4, 6)) > 0.3
    write_kitti_flow(tmp_path / "k.png", flow, valid)
    back, mask = read_kitti_flow(tmp_path / "k.png")
    assert np.array_equal(back, flow.astype(np.float32)) and np.array_equal(mask, valid)


def test_read_image_gives_rgb(tmp_path):
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's order
    cv2.imwrite(str(tmp_path / "frame.ppm"), bgr)
    rgb = read_image(tmp_path / "frame.ppm")
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb[0, 0].tolist() == [255, 0, 0]


def corrupt_files(tmp_path):
    """(reader, file name, words its error must hold) for every kind of broken file to refuse."""
    good = np.zeros((3, 4, 2), np.float32)
    write_flo(tmp_path / "good.flo", good)
    raw = (tmp_path / "good.flo").read_bytes()
    (tmp_path / "magic.flo").write_bytes(b"JUNK" + raw[4:])
    (tmp_path / "truncated.flo").write_bytes(raw[:-5])
    (tmp_path / "short.flo").write_bytes(raw[:6])
    (tmp_path / "size.flo").write_bytes(raw[:4] + np.array([-1, 3], "<i4").tobytes() + raw[12:])
    write_pfm(tmp_path / "good.pfm", np.zeros((2, 2, 3)))
    pfm = (tmp_path / "good.pfm").read_bytes()
    (tmp_path / "header.pfm").write_bytes(b"P6" + pfm[2:])
    (tmp_path / "scale.pfm").write_bytes(pfm.replace(b"-1.0", b"abc"))
    (tmp_path / "truncated.pfm").write_bytes(pfm[:-4])
    write_pfm(tmp_path / "gray.pfm", np.zeros((2, 2, 1)))
    cv2.imwrite(str(tmp_path / "eight.png"), np.zeros((2, 2, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "onechannel.png"), np.zeros((2, 2), np.uint16))
    (tmp_path / "garbage.png").write_bytes(b"not a png at all")
    return [(read_flo, "magic.flo", "magic"), (read_flo, "truncated.flo", "truncated"),
            (read_flo, "short.flo", "truncated"), (read_flo, "size.flo", "size"),
            (read_pfm, "header.pfm", "PF"), (read_pfm, "scale.pfm", "header"),
            (read_pfm, "truncated.pfm", "truncated"), (read_pfm_flow, "gray.pfm", "2 channels"),
            (read_kitti_flow, "eight.png", "16-bit"), (read_kitti_flow, "onechannel.png", "16-bit"),
            (read_kitti_flow, "garbage.png", "PNG"), (read_flo, "missing.flo", "does not exist"),
            (read_image, "garbage.png", "image")]


def test_each_corrupt_file_is_one_error_naming_it(tmp_path):
    for reader, name, words in corrupt_files(tmp_path):
        with pytest.raises(UserError) as err:
            reader(tmp_path / name)
        assert name in str(err.value) and words in str(err.value), (name, str(err.value))


def test_check_same_size(tmp_path):
    for name, shape in [("a.png", (4, 6, 3)), ("b.png", (4, 6, 3)), ("c.png", (5, 6, 3))]:
        cv2.imwrite(str(tmp_path / name), np.zeros(shape, np.uint8))
    write_flo(tmp_path / "f.flo", np.zeros((4, 6, 2)))
    write_pfm(tmp_path / "f.pfm", np.zeros((4, 6, 3)))
    same = [tmp_path / n for n in ("a.png", "b.png", "f.flo", "f.pfm")]
    assert check_same_size(same) == (4, 6)
    with pytest.raises(UserError) as err:
        check_same_size(same + [tmp_path / "c.png"])
    assert "c.png" in str(err.value) and "differs" in str(err.value)


def test_writers_refuse_non_flow_arrays(tmp_path):
    with pytest.raises(UserError, match=r"\(H, W, 2\)"):
        write_flo(tmp_path / "x.flo", np.zeros((2, 2, 3)))
    with pytest.raises(UserError, match="valid"):
        write_kitti_flow(tmp_path / "x.png", np.zeros((2, 2, 2)), np.ones((3, 2)))
