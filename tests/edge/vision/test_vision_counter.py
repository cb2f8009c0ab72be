"""The entrance counter and the head counter on synthetic frames (small resolutions, short scenes)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from edge.vision import synth
from edge.vision.accuracy import run_scenario
from edge.vision.counter import (
    CounterConfig,
    Direction,
    HeadCountConfig,
    HeadCounter,
    LineConfig,
    PeopleCounter,
    median_count,
)
from edge.vision.synth import OFF_BOTTOM, OFF_TOP, Person, Scenario

W, H = 160, 120  # the counter's sizes are relative, so the scenes count the same at a quarter size


def small(sc: Scenario):
    return sc.counter_config(width=W, height=H)


@pytest.mark.parametrize("make", synth.SCENARIOS, ids=lambda m: m.__name__)
def test_each_standard_scene_counts_exactly(make):
    sc = make()
    res = run_scenario(sc, small(sc), W, H)
    assert (res.entries, res.exits) == (sc.true_entries, sc.true_exits), res


def test_truth_comes_from_the_paths_not_from_a_declaration():
    sc = synth.turn_back()
    assert [p.crossing(sc.line_y) for p in sc.people] == [0, 0, 1, 0, 1]
    assert (sc.true_entries, sc.true_exits) == (2, 0)
    assert (synth.lingering().true_entries, synth.lingering().true_exits) == (1, 1)


def _one(path, **kw) -> Scenario:
    return Scenario("custom", "one person", (Person(path=tuple(path)),), path[-1][0] + 2.0, **kw)


def test_someone_lingering_on_the_line_and_leaving_counts_nothing():
    pts, _ = synth.linger(1.5, 0.5, 7.0, OFF_TOP, from_top=True)
    sc = _one(pts)
    assert (sc.true_entries, sc.true_exits) == (0, 0)
    res = run_scenario(sc, small(sc), W, H)
    assert (res.entries, res.exits) == (0, 0)


def test_someone_lingering_on_the_line_then_entering_counts_once():
    pts, _ = synth.linger(1.5, 0.5, 7.0, OFF_BOTTOM, from_top=True)
    sc = _one(pts)
    res = run_scenario(sc, small(sc), W, H)
    assert (res.entries, res.exits) == (1, 0)


def test_turning_back_inside_the_band_counts_nothing_but_going_further_counts():
    # Stepping 5 % of the frame past the line stays inside the 8 % band: not an entry.
    pts, t1 = synth.approach(1.5, 0.5, 0.55, from_top=True)
    back = [*pts, (t1 + 0.5, 0.5, 0.55), (t1 + 0.5 + 0.7 / synth.WALK_SPEED, 0.5, OFF_TOP)]
    res = run_scenario(_one(back), small(_one(back)), W, H)
    assert (res.entries, res.exits) == (0, 0)
    # Walking well into the room and then back out is a real entry followed by a real exit.
    pts, t1 = synth.approach(1.5, 0.5, 0.85, from_top=True)
    far = [*pts, (t1 + 0.5, 0.5, 0.85), (t1 + 0.5 + 1.0 / synth.WALK_SPEED, 0.5, OFF_TOP)]
    res = run_scenario(_one(far), small(_one(far)), W, H)
    assert (res.entries, res.exits) == (1, 1)


def test_which_side_is_in_is_configurable():
    sc = synth.single_file()
    flipped = sc.counter_config(width=W, height=H, line={"y1": 0.5, "y2": 0.5, "inside_x": 0.5, "inside_y": 0.0})
    res = run_scenario(sc, flipped, W, H)
    assert (res.entries, res.exits) == (sc.true_exits, sc.true_entries)


def test_crossings_carry_direction_and_time():
    sc = synth.single_file()
    counter = PeopleCounter(small(sc))
    crossings = []
    for t, frame in sc.frames(W, H):
        crossings += counter.process(frame, t).crossings
    assert [c.direction for c in crossings] == [Direction.IN] * 6 + [Direction.OUT] * 4
    times = [c.t for c in crossings]
    assert times == sorted(times)
    assert len({c.track_id for c in crossings[:6]}) == 6


def test_processing_rate_drops_frames_beyond_the_configured_fps():
    counter = PeopleCounter(CounterConfig(width=W, height=H, fps=10))
    frame = np.full((H, W, 3), 120, np.uint8)
    processed = sum(counter.process(frame, i / 30).processed for i in range(90))  # 3 s at 30 fps
    assert 29 <= processed <= 31


def test_frames_are_scaled_to_the_processing_resolution():
    sc = synth.side_by_side()
    res = run_scenario(sc, small(sc), 320, 240)  # rendered at 320x240, counted at 160x120
    assert (res.entries, res.exits) == (sc.true_entries, sc.true_exits)


def test_a_sudden_whole_frame_change_relearns_instead_of_seeing_a_crowd():
    counter = PeopleCounter(CounterConfig(width=W, height=H, background={"match_brightness": False}))
    rng = np.random.default_rng(0)
    floor = rng.integers(90, 140, (H, W, 3), dtype=np.uint8)
    for i in range(30):
        counter.process(floor, i / 15)
    other = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    res = counter.process(other, 2.0)
    assert res.relearned and res.detections == []


def test_config_is_strict():
    with pytest.raises(ValidationError):
        CounterConfig.model_validate({"fsp": 15})
    with pytest.raises(ValidationError):
        LineConfig(x1=0.0, y1=0.5, x2=1.0, y2=0.5, inside_x=0.3, inside_y=0.5)  # inside point on the line
    with pytest.raises(ValidationError):
        LineConfig(x1=0.5, y1=0.5, x2=0.51, y2=0.5)
    assert CounterConfig.model_validate({"line": {"band": 0.1}}).line.band == 0.1


# ---- seated head count ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def head_counter() -> HeadCounter:
    return HeadCounter(HeadCountConfig())


@pytest.mark.parametrize(("diners", "seed"), [(0, 1), (3, 2), (6, 3), (8, 4)])
def test_head_count_of_seated_diners(head_counter, diners, seed):
    frames = synth.SeatedScene(diners, seed).frames(1)
    assert head_counter.count(frames[0]) == diners


def test_snapshot_is_the_median_so_one_bad_frame_changes_nothing(head_counter):
    frames = synth.SeatedScene(5, 7).frames(3)
    frames[1] = np.full_like(frames[1], 150)  # someone stands in front of the camera
    assert head_counter.snapshot(frames) == 5


def test_head_count_roi_limits_the_search(head_counter):
    frame = synth.SeatedScene(8, 5).frames(1)[0]
    top = HeadCounter(HeadCountConfig(roi=(0.0, 0.0, 1.0, 0.5)))
    assert top.count(frame) == 4  # one row of four seats in the top half


def test_median_count():
    assert median_count([3]) == 3
    assert median_count([5, 0, 5]) == 5
    assert median_count([4, 5, 6, 9]) == 5
    with pytest.raises(ValueError):
        median_count([])


def test_other_builtin_detectors_load_without_downloads():
    empty = np.full((240, 320, 3), 150, np.uint8)
    for det in ("haar_face", "haar_upperbody", "hog_people"):
        hc = HeadCounter(HeadCountConfig(detector=det, width=320, height=240))
        assert hc.count(empty) == 0


def _blobs(*rects: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((240, 320), np.uint8)
    for x, y, w, h in rects:
        mask[y:y + h, x:x + w] = 255
    return mask


def test_blob_splitting_follows_person_size_across_and_along_the_line():
    counter = PeopleCounter(CounterConfig())  # 320x240: a person is 48 px wide and at most 60 px long
    one = counter._detect(_blobs((100, 100, 46, 56)), 0.0)
    pair = counter._detect(_blobs((100, 100, 96, 50)), 0.0)  # two abreast, merged
    queue = counter._detect(_blobs((100, 60, 46, 120)), 0.0)  # two nose to tail, merged
    assert len(one) == 1
    assert len(pair) == 2 and abs(pair[0].y - pair[1].y) < 1 and abs(pair[0].x - pair[1].x) > 40
    assert len(queue) == 2 and abs(queue[0].x - queue[1].x) < 1 and abs(queue[0].y - queue[1].y) > 50
    small = counter._detect(_blobs((10, 10, 8, 8)), 0.0)  # below min_area: noise
    assert small == []


def _queue_mask(centres_y: list[int], xs: list[int] | None = None, walker: bool = False) -> np.ndarray:
    """People seen from above walking down the image, nose to tail: a 46 px torso with a narrow head
    above and legs below, each overlapping the next person's head so the whole queue is one blob."""
    import cv2

    mask = np.zeros((240, 320), np.uint8)
    for i, cy in enumerate(centres_y):
        cx = xs[i] if xs else 160
        cv2.ellipse(mask, (cx, cy), (23, 14), 0, 0, 360, 255, -1)  # torso and arms
        cv2.circle(mask, (cx, cy - 16), 9, 255, -1)  # head
        cv2.ellipse(mask, (cx, cy + 16), (13, 10), 0, 0, 360, 255, -1)  # legs
        if walker:
            cv2.rectangle(mask, (cx - 25, cy + 14), (cx + 25, cy + 36), 255, -1)  # frame, closed to a block
    return mask


def test_a_queue_is_cut_where_it_narrows_between_torsos():
    counter = PeopleCounter(CounterConfig())  # a person is at most 60 px long at 320x240
    # Three people 42 px apart make one 126 px blob: a cut by length alone would find two.
    dets = counter._detect(_queue_mask([70, 112, 154]), 0.0)
    assert len(dets) == 3
    assert [round(d.y) for d in sorted(dets, key=lambda d: d.y)] == pytest.approx([70, 112, 154], abs=6)
    assert all(abs(d.x - 160) < 2 for d in dets)


def test_a_queue_swaying_side_to_side_is_not_taken_for_people_abreast():
    counter = PeopleCounter(CounterConfig())
    # One blob whose box is 87 px wide (more than 1.45 person widths), yet no row holds two people:
    # cut as a grid by its box it would make four half-people.
    dets = sorted(counter._detect(_queue_mask([70, 112, 154], xs=[140, 160, 180]), 0.0), key=lambda d: d.y)
    assert len(dets) == 3
    assert [(round(d.x), round(d.y)) for d in dets] == [(pytest.approx(x, abs=4), pytest.approx(y, abs=6))
                                                        for x, y in ((140, 70), (160, 112), (180, 154))]


def test_a_queue_without_a_narrowing_is_still_cut_by_its_length():
    counter = PeopleCounter(CounterConfig())
    # Walking frames pushed into the back of the one ahead fill every gap: no valley in the profile.
    dets = counter._detect(_queue_mask([60, 110, 160], walker=True), 0.0)
    assert len(dets) == 3
    assert len(counter._detect(_queue_mask([100]), 0.0)) == 1  # one person is never cut


@pytest.mark.parametrize("make", synth.QUEUES, ids=lambda m: m.__name__)
def test_queues_nose_to_tail_count_exactly(make):
    # Counted at the default 320x240: at a quarter of that a queue's necks are two pixels wide.
    sc = make()
    res = run_scenario(sc, sc.counter_config(), 320, 240)
    assert (res.entries, res.exits) == (sc.true_entries, sc.true_exits), res


def test_queue_config_is_validated():
    with pytest.raises(ValidationError):
        CounterConfig.model_validate({"blobs": {"queue_valley": 1.0}})
    with pytest.raises(ValidationError):
        CounterConfig.model_validate({"blobs": {"queue_gap": 0}})
    assert CounterConfig().blobs.queue_gap == 0.5
