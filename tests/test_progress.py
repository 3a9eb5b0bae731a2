"""Progress of long non-fit steps: a tqdm bar on a terminal, one log line per stage otherwise."""

from __future__ import annotations

import io
import logging

from kerasflow.progress import Stage, progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_not_a_terminal_logs_one_line_per_stage(caplog):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="kerasflow.progress"):
        items = list(progress(range(300), "scanning files", unit="file", stream=stream))
    assert items == list(range(300))
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["scanning files: 300 files ..."]
    assert stream.getvalue() == ""  # no bar in a log


def test_short_stages_stay_silent(caplog):
    with caplog.at_level(logging.DEBUG, logger="kerasflow.progress"):
        assert list(progress([1, 2, 3], "tiny", stream=io.StringIO())) == [1, 2, 3]
    assert caplog.records == []


def test_a_terminal_gets_a_bar():
    stream = _Terminal()
    assert sum(progress(range(250), "decoding", unit="record", stream=stream)) == sum(range(250))
    text = stream.getvalue()
    assert "decoding" in text and "250/250" in text and "record" in text


def test_stage_counts_updates_by_hand():
    stream = _Terminal()
    with Stage("predicting", total=400, unit="batch", stream=stream) as stage:
        for _ in range(4):
            stage.update(100)
    assert stage.done == 400 and "400/400" in stream.getvalue()


def test_data_check_reports_its_file_scan(tmp_path, caplog):
    from kerasflow.config import DataConfig
    from kerasflow.pipelines.check import check_data
    from tests.training.digits_folder import write_digits_folder

    folder = write_digits_folder(tmp_path / "d", size=8, per_class=25)
    with caplog.at_level(logging.INFO, logger="kerasflow.progress"):
        report = check_data(DataConfig(source=str(folder)), "class")
    assert report.num_examples == 250
    lines = [r.getMessage() for r in caplog.records if r.name == "kerasflow.progress"]
    assert "checking image headers: 250 files ..." in lines
    assert "decoding every file: 250 files ..." in lines
