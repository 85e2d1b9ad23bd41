"""Bar-chart geometry: bars scaled to the largest value, in order, None and 0 drawn as nothing."""

from addon.web.charts import columns, rows


def test_columns_scale_to_the_largest_and_keep_the_order() -> None:
    points = [("2026-03-01", 50), ("2026-03-02", 100), ("2026-03-03", None)]
    chart = columns(points, "cost", str, width=300, height=100, widest=100)
    assert (chart.width, chart.height, chart.empty) == (300, 100, False)
    assert [b.label for b in chart.bars] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert [b.height for b in chart.bars] == [50.0, 100.0, 0.0]
    assert [b.y for b in chart.bars] == [50.0, 0.0, 100.0]  # from the baseline up
    assert [b.x for b in chart.bars] == [1.0, 101.0, 201.0]
    assert all(b.width == 98.0 for b in chart.bars)
    assert [b.text for b in chart.bars] == ["50", "100", "None"]


def test_a_few_columns_stay_narrow() -> None:
    chart = columns([("2026-03-01", 5)], "cost", width=960, widest=40)
    assert chart.bars[0].width == 38.0 and chart.bars[0].x == 1.0


def test_rows_leave_room_for_labels_and_values() -> None:
    chart = rows([("alice", 200), ("bob", 50), ("carol", 0)], "cost", lambda v: f"${v}", width=500, label_width=100)
    assert [b.x for b in chart.bars] == [100, 100, 100]
    assert [b.width for b in chart.bars] == [260.0, 65.0, 0]
    assert [b.y for b in chart.bars] == [0, 22, 44]
    assert chart.height == 66
    assert chart.bars[0].text == "$200"


def test_a_tiny_value_still_shows_and_no_data_is_empty() -> None:
    chart = rows([("big", 1_000_000), ("tiny", 1)], "cost")
    assert chart.bars[1].width == 1
    assert columns([], "cost").empty and rows([], "cost").empty
    assert columns([("a", 0)], "cost").bars[0].height == 0
