"""Frames between original images and the model input (resize, letterbox), on hand-made tensors."""

from __future__ import annotations

import torch

from hagxai.models.geometry import letterbox, resize_frame


def test_letterbox_round_trip():
    image = torch.rand(3, 100, 200)
    padded, frame = letterbox(image, (160, 160))
    assert padded.shape == (3, 160, 160)
    assert frame.scale == (0.8, 0.8) and frame.pad == (40.0, 0.0)
    boxes = torch.tensor([[10.0, 20.0, 150.0, 90.0]])
    there = frame.boxes_to_input(boxes)
    torch.testing.assert_close(there, torch.tensor([[8.0, 56.0, 120.0, 112.0]]))
    torch.testing.assert_close(frame.boxes_to_original(there), boxes)
    saliency = torch.zeros(160, 160)
    saliency[40:120] = 1.0
    back = frame.map_to_original(saliency)
    assert back.shape == (100, 200) and torch.all(back == 1.0)


def test_resize_frame_maps_back():
    # 40×80 original, 80×40 input: rows are stretched ×2, columns squeezed ×0.5.
    frame = resize_frame((40, 80), (80, 40))
    assert frame.scale == (2.0, 0.5) and frame.pad == (0.0, 0.0)
    boxes = torch.tensor([[20.0, 10.0, 60.0, 30.0], [0.0, 0.0, 80.0, 40.0]])
    there = frame.boxes_to_input(boxes)
    torch.testing.assert_close(
        there, torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 40.0, 80.0]])
    )
    torch.testing.assert_close(frame.boxes_to_original(there), boxes)
    # Boxes leaving the input are clipped to the original image.
    torch.testing.assert_close(
        frame.boxes_to_original(torch.tensor([[-4.0, -2.0, 50.0, 90.0]])),
        torch.tensor([[0.0, 0.0, 80.0, 40.0]]),
    )

    # The box above, lit on the input, lands on the box in the original frame.
    saliency = torch.zeros(80, 40)
    saliency[20:60, 10:30] = 1.0
    back = frame.map_to_original(saliency)
    assert back.shape == (40, 80)
    column = torch.zeros(40)
    column[10:30] = 1.0
    assert torch.equal(back[:, 40], column)
    row = torch.zeros(80)
    row[19:61] = 1.0
    row[[19, 20, 59, 60]] = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(back[20], row)
    assert torch.equal(back[:10], torch.zeros(10, 80)) and torch.equal(
        back[30:], torch.zeros(10, 80)
    )
    torch.testing.assert_close(back.sum(), torch.tensor(800.0))  # the box's area, 20 × 40

    # A map at another resolution of the input frame: its bright cell lands where it belongs.
    frame = resize_frame((50, 100), (64, 64))
    coarse = torch.zeros(8, 8)
    coarse[2, 5] = 1.0  # input rows 16..24, columns 40..48 -> original rows 12.5..18.75, 62.5..75
    back = frame.map_to_original(coarse)
    assert back.shape == (50, 100)
    y, x = divmod(int(back.argmax()), 100)
    assert 12 <= y < 19 and 62 <= x < 75, (y, x)
