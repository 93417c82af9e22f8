"""The import path of the letter classifier in models logged before signlab had subpackages:
their MLmodel pickles `signlab.pyfunc.LetterPyfunc`, so it must keep resolving."""

from signlab.models.pyfunc import LetterPyfunc

__all__ = ["LetterPyfunc"]
