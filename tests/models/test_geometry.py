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
    frame = resize_frame((50, 100), (64, 64))
    assert frame.map_to_original(torch.ones(8, 8)).shape == (50, 100)
