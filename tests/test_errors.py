"""One-line errors: long lists inside messages are cut with a count."""

from __future__ import annotations

from hagxai.errors import cut_list


def test_cut_list_keeps_short_lists_whole() -> None:
    assert cut_list(["car", "bus"]) == "car, bus"
    assert cut_list([]) == ""


def test_cut_list_cuts_after_limit_with_count() -> None:
    names = [f"class{i}" for i in range(700)]
    text = cut_list(names, 3)
    assert text == "class0, class1, class2 … and 697 more"
    assert "\n" not in text


def test_class_subset_message_is_one_short_line(tmp_path) -> None:
    import pytest

    from hagxai.data.readers.labels import Labels
    from hagxai.errors import UserError

    labels = Labels(
        task="detection", source=tmp_path / "labels", classes=[f"n{i:03d}" for i in range(700)]
    )
    with pytest.raises(UserError) as err:
        labels.keep(["nope", "n001"])
    message = str(err.value)
    assert "nope" in message and "700 classes" in message and "695 more" in message
    assert len(message) < 250
