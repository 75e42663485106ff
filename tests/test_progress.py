"""Progress without a terminal: plain lines at an interval, never carriage returns; a bar on a terminal."""

import io

from lungxray.progress import PlainProgress, bar


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_plain_lines_at_the_interval_with_rate_and_time_left(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("lungxray.progress.time.monotonic", clock)
    out = io.StringIO()  # not a TTY
    shown = bar(range(100), desc="scoring", unit="img", stream=out, interval=10.0)
    assert isinstance(shown, PlainProgress)
    for _ in shown:
        clock.t += 0.5  # 2 img/s: a line every 20 images
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 5 + 1  # at 20, 40, 60, 80, 100 images, and the closing line
    assert lines[0].startswith("scoring: 20/100 (20%), 2.0 img/s, 0:40 left")
    assert lines[-1].startswith("scoring: 100/100 (100%)") and "done in 0:50" in lines[-1]


def test_a_short_loop_prints_nothing_and_disabled_prints_nothing(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("lungxray.progress.time.monotonic", clock)
    out = io.StringIO()
    with bar(total=3, desc="x", stream=out) as shown:
        for _ in range(3):
            clock.t += 0.1
            shown.update(1)
    assert out.getvalue() == ""
    quiet = io.StringIO()
    assert list(bar(range(3), enabled=False, stream=quiet)) == [0, 1, 2] and quiet.getvalue() == ""


def test_postfix_is_shown_and_a_terminal_gets_tqdm(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("lungxray.progress.time.monotonic", clock)
    out = io.StringIO()
    shown = bar(total=10, desc="epoch 1/2", unit="batch", stream=out, interval=1.0)
    clock.t += 2
    shown.set_postfix(loss="0.5000")
    shown.update(5)
    assert out.getvalue().strip() == "epoch 1/2: 5/10 (50%), 2.5 batch/s, 0:02 left, loss=0.5000"

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    from tqdm import tqdm

    assert isinstance(bar(range(2), stream=Terminal()), tqdm)


def test_training_into_a_log_writes_lines_not_carriage_returns(tmp_path, capsys, sample_dir):
    from lungxray.config import load_config
    from lungxray.train import train

    cfg = load_config(None, {"model": "cnn", "image_size": 32, "epochs": 2, "batch_size": 8})
    train(cfg, sample_dir, tmp_path / "run", progress=True)
    err = capsys.readouterr()
    text = err.err + err.out
    assert "\r" not in text
    assert "epoch 1/2  loss" in text and "epoch 2/2  loss" in text  # one line per epoch
