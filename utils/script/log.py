"""One logger for console and the run's log file; only the main process writes.

`log.info(text, extra=FILE_ONLY)` goes to the log file alone (long dumps such as the options).
"""
import logging
import os
import sys

LOGGER_NAME = "coreecho"
FILE_ONLY = {"file_only": True}


def _console_filter(record):
    return not getattr(record, "file_only", False)


def setup_logger(log_file=None, is_main=True):
    logger = logging.getLogger(LOGGER_NAME)
    for handler in logger.handlers:
        handler.close()
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if is_main else logging.ERROR)
    formatter = logging.Formatter("%(asctime)s | %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(formatter)
    console.addFilter(_console_filter)
    logger.addHandler(console)
    if log_file and is_main:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    return logger


def log_to_files(message):
    """Append `message` to the open log files only (the console already shows it another way)."""
    logger = logging.getLogger(LOGGER_NAME)
    if any(isinstance(h, logging.FileHandler) for h in logger.handlers):
        logger.error(message, extra=FILE_ONLY)
