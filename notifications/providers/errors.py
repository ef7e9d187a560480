"""Our own words for what went wrong at a provider.

The rest of the code never sees a Twilio or Anymail exception: a provider
module maps each failure to one of these, and the outbox decides from the
type alone whether to try again.
"""


class ProviderError(Exception):
    """A provider refused or failed to take a message.

    `code` is the provider's own error code as text ("21211", "500",
    "timeout"), kept on the outbox row for operators to grep.
    """

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class TransientProviderError(ProviderError):
    """Worth trying again later: 5xx, 429, timeouts, connection failures."""


class PermanentProviderError(ProviderError):
    """Trying again cannot help: invalid number, opted out, rejected address."""
