"""utils/script/log.py: long dumps (the options) go to the log file only, not to the console."""


def test_long_dumps_go_to_the_log_file_only(tmp_path, capsys):
    from utils.script.log import FILE_ONLY, setup_logger

    log = setup_logger(tmp_path / "training.log")
    log.info("Options:\n  temp: 1.0", extra=FILE_ONLY)
    log.info("Device: cpu")
    for handler in log.handlers:
        handler.flush()
    assert "Options" not in capsys.readouterr().out
    assert "Options:\n  temp: 1.0" in (tmp_path / "training.log").read_text()
