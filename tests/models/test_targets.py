"""Target choice for detectors, on hand-made tensors."""

from __future__ import annotations

import torch

from hagxai.models.geometry import letterbox
from hagxai.models.targets import TargetSpec, detector_targets, drise_similarity, match_one_to_one


def test_match_is_one_to_one_and_class_aware():
    det = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float)
    labels = torch.tensor([0, 0, 1])
    scores = torch.tensor([0.9, 0.8, 0.7])
    gt = torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60], [51, 51, 61, 61]], dtype=torch.float)
    gt_labels = torch.tensor([0, 0, 1])
    det_index, gt_index = match_one_to_one(det, labels, scores, gt, gt_labels, 0.5)
    # gt 1 has class 0 but the only detection there is class 1: unmatched.
    assert gt_index.tolist() == [0, 2] and det_index.tolist() == [0, 2]


def test_unmatched_ground_truth_is_reported():
    detections = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]),
            "scores": torch.tensor([0.9, 0.2]),
            "labels": torch.tensor([1, 1]),
            "anchors": torch.tensor([7, 3]),
        }
    ]
    _, frame = letterbox(torch.rand(3, 32, 32), (32, 32))
    spec = TargetSpec(
        boxes=[torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 110.0, 110.0]])],
        labels=[torch.tensor([1, 1])],
        conf_threshold=0.1,
    )
    targets = detector_targets(detections, [frame], spec)
    assert targets.anchors.tolist() == [7] and targets.gt_index.tolist() == [0]
    assert targets.unmatched_gt[0].tolist() == [1]
    free = detector_targets(detections, [frame], TargetSpec(conf_threshold=0.1))
    assert free.anchors.tolist() == [7, 3] and free.gt_index.tolist() == [-1, -1]


def test_drise_similarity_takes_best_detection():
    target = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 20.0]])
    probs = torch.tensor([[0.1, 0.2], [0.0, 0.9]])
    sim = drise_similarity(target, torch.tensor([1]), boxes, probs)
    torch.testing.assert_close(sim, torch.tensor([0.45]))


def test_torchvision_detector_labels_are_dataset_classes() -> None:
    from hagxai.models.tv_detection import TorchvisionDetectorAdapter

    # torchvision keeps label 0 for the background: its label k is the dataset's class k - 1.
    adapter = TorchvisionDetectorAdapter.__new__(TorchvisionDetectorAdapter)
    adapter.label_offset = 1
    output = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 3.0, 3.0]]),
            "scores": torch.tensor([0.9, 0.4]),
            "labels": torch.tensor([3, 1]),
        }
    ]
    assert adapter.detections(output)[0]["labels"].tolist() == [2, 0]
    adapter.label_offset = 0
    assert adapter.detections(output)[0]["labels"].tolist() == [3, 1]
