"""The one exception type the command-line tools turn into a single clear line."""


class UserError(ValueError):
    """Bad input from the user: a config key, a file, a shape. The message says which."""
