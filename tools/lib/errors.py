"""The errors the tools report as one ``error: ...`` line."""


class ConfigPrepareError(Exception):
    """A config cannot run as asked; the message says why and what to do."""


class UnknownConfigKeyError(ConfigPrepareError, KeyError):
    """A ``--cfg-options`` key names nothing in the config."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class DatasetNotFoundError(ConfigPrepareError, FileNotFoundError):
    """A dataset file or directory of the config does not exist."""

