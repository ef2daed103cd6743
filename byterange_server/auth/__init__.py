"""Who is asking, without I/O: bearer tokens (:mod:`.tokens`) and signed upload URLs
(:mod:`.signing`). An application backend mints signed URLs with :func:`signed_url`."""

from .signing import Grant
from .signing import signed_url
from .tokens import Credentials
from .tokens import Principal

__all__ = ["Credentials", "Grant", "Principal", "signed_url"]
