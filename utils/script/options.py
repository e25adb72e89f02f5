"""Command-line plumbing of every script: a parser whose --help shows every default, which flags the script
offers (for cli's hints), and the released run names. The options themselves: models/options.py (they name the
models' choices) and the scripts."""
import argparse
import copy


class HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows every option's default, also for options without a help text (argparse's own formatter
    adds the default only to options that have one)."""

    def _format_action(self, action):
        if not action.help and action.option_strings and action.default not in (None, argparse.SUPPRESS) \
                and action.nargs != 0:  # flags (store_true) need no default
            action = copy.copy(action)
            action.help = "default: %(default)s"
        return super()._format_action(action)


_parsers = []  # the script's parser and its sub-command parsers, so that hints name only flags it has (cli)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _parsers.append(self)


def parser_with_defaults(prog, description):
    _parsers.clear()  # a script builds one parser: the latest one is the script's
    return _Parser(prog=prog, description=description, formatter_class=HelpWithDefaults)


def offers(flag):
    """Whether the script's parser (or one of its sub-commands) has `flag`; True before any parser was built."""
    return not _parsers or any(flag in parser._option_string_actions for parser in _parsers)


def run_name(opt, stage):
    """The released folder names (spaces and brackets dropped so paths are shell-safe; stage 2 without the
    RnC temperature it never uses)."""
    if opt.run_name:
        return opt.run_name
    if stage == 1:
        return (f"RnC+L1SG_{opt.model}_ep_{opt.epochs}_lr_{opt.learning_rate}_d_{opt.lr_decay_rate}"
                f"_wd_{opt.weight_decay}"
                f"_bsz_{opt.batch_size}_aug_{opt.aug}_temp_{opt.temp}_label_{opt.label_diff}_feature_{opt.feature_sim}"
                f"_trial_{opt.trial}")
    return (f"RnC-LP_{opt.model}_ep_{opt.epochs}_lr_{opt.learning_rate}_wd_{opt.weight_decay}_bsz_{opt.batch_size}"
            f"_aug_{opt.aug}_trial_{opt.trial}")
