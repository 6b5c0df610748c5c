"""The one exception type users see.

Every problem caused by what the user passed (a malformed file, an unknown user, a checkpoint
from another data set, a NaN loss) is raised as `FameError` with a one-line message that names
the problem and, where possible, what to pass instead. The CLI prints it as `error: ...` and
exits non-zero; library callers can catch it like any other exception.
"""


class FameError(Exception):
    """A problem with the user's input, stated in one line."""


class DataError(FameError, ValueError):
    """A data file or data set that cannot be read or used as given."""


class CheckpointError(FameError):
    """A checkpoint that is missing, corrupt or does not fit the data set given."""


class ConfigError(FameError, ValueError):
    """An option or a recorded setting of the wrong type or out of its range."""
