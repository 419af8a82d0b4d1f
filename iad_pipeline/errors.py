"""Exception types of the domain core.

Every message names the file or dataset involved, what was found, what was expected and how
to fix it, so the CLI can print ``str(exc)`` as its one-line reason.
"""


class IadError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class UnknownDatasetError(IadError, KeyError):
    """A dataset key that the registry does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class LicenseNotAcceptedError(IadError):
    """A dataset whose licence needs explicit acceptance was requested without it."""


class DownloadError(IadError):
    """A download failed after its retries, or the server refused it."""


class LinkMovedError(DownloadError):
    """The server answered 404 or 410: the dataset's link has probably moved."""


class ChecksumMismatchError(DownloadError):
    """The downloaded or supplied bytes do not have the expected sha256."""


class InsufficientDiskSpaceError(IadError):
    """Not enough free space for a download or an extraction."""


class UnsafeArchiveError(IadError):
    """An archive member would escape the target folder or is not a regular file or folder."""


class LayoutError(IadError):
    """A dataset folder does not have the expected on-disk layout."""


class DatasetNotInstalledError(IadError):
    """A dataset was read before it was fetched."""


class LockBusyError(IadError):
    """Another process holds the lock of a dataset, an evaluation or another shared file."""
