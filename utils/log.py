"""One logger for console and the run's log file; only the main process writes."""
import logging
import os
import sys

LOGGER_NAME = "coreecho"


def setup_logger(log_file=None, is_main=True):
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if is_main else logging.ERROR)
    formatter = logging.Formatter("%(asctime)s | %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(formatter)
    logger.addHandler(console)
    if log_file and is_main:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    return logger


def get_logger():
    return logging.getLogger(LOGGER_NAME)
