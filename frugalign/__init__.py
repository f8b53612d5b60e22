"""frugalign: align a language model to human preferences while paying for few human labels."""

__version__ = "0.1.0"
