"""What every command line shares: its --help layout and its wording."""
import argparse
import re

__all__ = ['HelpFormatter', 'cli_words']


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each default said once: not added where the help text already speaks of its default, nor
    for flags (False) and unset (None) values."""

    def _get_help_string(self, action):
        text = action.help or ''
        if (not action.option_strings or 'default' in text.lower() or action.default is None
                or action.default is False or action.default is argparse.SUPPRESS):
            return text
        return text + ' (default: %(default)s)'


def cli_words(message):
    """An API message in the command line's words: network='net3l' -> --network net3l, ctx_id=0 -> --gpu 0."""
    message = re.sub(r"network='([^']*)'", r'--network \1', message)
    return re.sub(r'\bctx_id=(-?\d+) \(--gpu -?\d+\)', r'--gpu \1', message)
